"""End to end: the real `dvc repro` and `dvc exp run` on a copy of this repo with tiny params."""
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


CLASSES = ["zero", "seven"]  # two classes: every per-class stage costs a process start
SOURCES = ["vanilla", "dreambooth", "textual_inversion"]
FINETUNING = {*(f"train_{m}@{c}" for m in ("dreambooth", "textual_inversion") for c in CLASSES),
              "generate_finetuned@dreambooth", "generate_finetuned@textual_inversion"}


def sh(args, cwd, env):
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, f"{' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


def ran(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


def restored(output: str) -> set[str]:
    return set(re.findall(r"Stage '([^']+)' is cached - skipping run", output))


@pytest.fixture(scope="module")
def project(tmp_path_factory, tiny_base):
    """A git + DVC repo holding this project's files (as git sees them) and tiny params."""
    root = tmp_path_factory.mktemp("project")
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                           capture_output=True, text=True, check=True).stdout.split()
    for f in files:
        if (REPO / f).is_file() and not f.startswith("tests/"):
            (root / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / f, root / f)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["classes"] = CLASSES
    params["mix"]["source"] = "vanilla"  # p = 0.0 at first: the real images alone
    params["split"].update(original_per_class=30, test_per_class=10)
    params["train"].update(epochs=2, batch_size=32, image_size=16)
    params["reference"].update(epochs=1, image_size=16)
    # The built-in model's architecture with random weights: the wiring is under test, not the drawing.
    params["base"]["model"] = str(tiny_base / "pipeline")
    params["generate"].update(per_class=30, steps=2, batch_size=30)
    params["dreambooth"].update(instance_images=2, class_images=2, prior_steps=2, steps=2, batch_size=1)
    params["textual_inversion"].update(images=2, steps=2, batch_size=1)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = dict(os.environ, DIFFAUG_CACHE=str(tmp_path_factory.mktemp("cache")), DVC_NO_ANALYTICS="1",
               GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.com", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@example.com")
    sh(["git", "init", "-q"], root, env)
    sh(["git", "add", "-A"], root, env)
    sh(["git", "commit", "-qm", "tiny"], root, env)
    return root, env


def test_repro_then_experiments(project):
    root, env = project
    out = sh(["dvc", "repro"], root, env)
    assert ran(out) == {"scrape", "split", "base_model", "prompts", "generate_vanilla", "mix", "train", "evaluate",
                        "reference", *FINETUNING, *(f"recognise@{s}" for s in SOURCES), "fid_reference",
                        *(f"fid@{s}" for s in SOURCES), "clip_zero_shot"}
    for source in SOURCES:
        assert len(list((root / "data/synthetic" / source / "seven").glob("*.png"))) == 30
        fid = yaml.safe_load((root / f"metrics/fid/{source}.json").read_text())
        assert fid["fid"] >= 0 and set(fid["per_class"]) == set(CLASSES)
    metrics = yaml.safe_load((root / "metrics/evaluate.json").read_text())
    assert metrics["test_images"] == 10 * len(CLASSES) and 0.0 <= metrics["accuracy"] <= 1.0
    sh(["git", "add", "-A"], root, env)
    sh(["git", "commit", "-qm", "baseline"], root, env)

    # Changing p (synthetic images into the mix) reruns exactly mix, train and evaluate.
    out = sh(["dvc", "exp", "run", "-S", "mix.p=0.5"], root, env)
    assert ran(out) == {"mix", "train", "evaluate"}
    mix = yaml.safe_load((root / "metrics/mix.json").read_text())
    assert (mix["train_images"], mix["synthetic_images"]) == (50, 26)  # 2 classes x 25, of them 2 x round(12.5)
    diff = sh(["dvc", "metrics", "diff"], root, env)
    assert "metrics/mix.json" in diff and "synthetic_images" in diff

    # Setting p back restores every stage from the run-cache without recomputing.
    out = sh(["dvc", "exp", "run", "-S", "mix.p=0.0"], root, env)
    assert ran(out) == set() and restored(out) == {"mix", "train", "evaluate"}
    assert yaml.safe_load((root / "metrics/mix.json").read_text())["synthetic_images"] == 0

    # A generation param touches the three generation stages and nothing upstream (base model,
    # fine-tuning); `dvc status` says so without the cost of running them (the DreamBooth run below
    # shows a changed synthetic set rerunning what follows it).
    kept = (root / "params.yaml").read_text()
    params = yaml.safe_load(kept)
    params["generate"]["steps"] = 3
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    status = json.loads(subprocess.run(["dvc", "status", "--json"], cwd=root, env=env, capture_output=True,
                                       text=True, check=True).stdout)
    assert set(status) == {"generate_vanilla", "generate_finetuned@dreambooth", "generate_finetuned@textual_inversion"}
    (root / "params.yaml").write_text(kept)

    # A DreamBooth param retrains DreamBooth, regenerates and measures its set (not the reference
    # statistics); the mix (of vanilla images here) is rebuilt identical, so training stops there.
    # Vanilla and Textual Inversion are untouched.
    out = sh(["dvc", "exp", "run", "-S", "dreambooth.steps=3"], root, env)
    assert ran(out) == {*(f"train_dreambooth@{c}" for c in CLASSES), "generate_finetuned@dreambooth",
                        "recognise@dreambooth", "fid@dreambooth", "mix"}

    shows = sh(["dvc", "exp", "show", "--csv"], root, env)
    assert "mix.p" in shows and "0.5" in shows

    sh(["dvc", "plots", "show", "-o", "dvc_plots"], root, env)
    html = (root / "dvc_plots/index.html").read_text()
    for title in ("Training loss", "Confusion matrix", "Per-class test accuracy"):
        assert title in html

    # The study report reads these experiments through `dvc exp show --json`.
    sh(["python", "-m", "diffaug.report", "--out", "reports"], root, dict(env, PYTHONPATH=str(root / "src")))
    summary = (root / "reports/summary.md").read_text()
    assert "vanilla" in summary and list((root / "reports").glob("accuracy_vs_p_*.png"))
