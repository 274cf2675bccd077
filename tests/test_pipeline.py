"""End to end: the real `dvc repro` and `dvc exp run` on a copy of this repo with tiny params, on a
user's folder dataset with awkward class names and bad files (not the built-in digits)."""

import hashlib
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from diffaug.io import read_csv
from helpers import pattern

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

# Three imbalanced classes: a space, a non-ASCII letter, mixed case.
IMAGES = {"red circle": 26, "quadrat_ä": 22, "Triangle": 19}
CLASSES = list(IMAGES)
SOURCES = ["vanilla", "dreambooth", "textual_inversion", "img2img", "vanilla_filtered"]
FINETUNING = {
    *(f"train_{m}@{c}" for m in ("dreambooth", "textual_inversion") for c in CLASSES),
    "generate_finetuned@dreambooth",
    "generate_finetuned@textual_inversion",
}
MEASURE = {
    "measure_txt2img@vanilla",
    "measure_finetuned@dreambooth",
    "measure_finetuned@textual_inversion",
    "measure_img2img@img2img",
    "measure_filtered@vanilla_filtered",
    "measure_real@pool",
}


def sh(args, cwd, env, ok=True):
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    assert (proc.returncode == 0) == ok, f"{' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


def ran(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


def restored(output: str) -> set[str]:
    return set(re.findall(r"Stage '([^']+)' is cached - skipping run", output))


def digests(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for top in ("data", "models", "metrics")
        for p in sorted((root / top).rglob("*"))
        if p.is_file()
    }


def folder_dataset(root: Path) -> None:
    """data/input/shapes/<class>/: distinct images, and one of each kind of bad file."""
    for k, (c, n) in enumerate(IMAGES.items()):
        (root / c).mkdir(parents=True)
        for i in range(n):
            pattern(100 * k + i).save(root / c / f"{i:03d}.png")
    good = (root / "red circle" / "000.png").read_bytes()
    (root / "red circle" / "copy.png").write_bytes(good)  # a duplicate
    (root / "red circle" / "broken.png").write_bytes(good[:40] + b"\0" * 200)  # a corrupt PNG
    pattern(7).save(root / "quadrat_ä" / "photo.jpg")
    jpeg = (root / "quadrat_ä" / "photo.jpg").read_bytes()
    (root / "quadrat_ä" / "photo.jpg").write_bytes(jpeg[: len(jpeg) // 2])  # a truncated JPEG
    (root / "Triangle" / "notes.txt").write_text("not an image")  # a stray text file
    (root / "Triangle" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")  # a hidden file


@pytest.fixture(scope="module")
def project(tmp_path_factory, tiny_base):
    """A git + DVC repo holding this project's files (as git sees them) and tiny params."""
    root = tmp_path_factory.mktemp("project")
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    for f in files:
        if (REPO / f).is_file() and not f.startswith("tests/"):
            (root / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / f, root / f)
    folder_dataset(root / "data/input/shapes")
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["classes"] = CLASSES
    params["scrape"].update(source="folder", path="data/input/shapes")
    params["split"].update(original_per_class=12, test_per_class=5)  # n = 12 - 2 for validation = 10
    # A short steps budget: what is under test is which stages run and what they write, not the model.
    params["train"].update(steps=8, val_every=4, batch_size=16, image_size=16)
    params["reference"].update(epochs=1, image_size=16)
    # The built-in model's architecture with random weights: the wiring is under test, not the drawing.
    params["base"]["model"] = str(tiny_base / "pipeline")
    params["generate"].update(per_class=12, steps=2, batch_size=12)
    params["img2img"].update(per_class=12, steps=2)
    params["filter"]["threshold"] = 0.0  # the random-weight model's images: keep all (test_filter tests the rule)
    params["dreambooth"].update(instance_images=2, class_images=2, prior_steps=2, steps=2, batch_size=1)
    params["textual_inversion"].update(images=2, steps=2, batch_size=1)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False, allow_unicode=True))
    env = dict(
        os.environ,
        DIFFAUG_CACHE=str(tmp_path_factory.mktemp("cache")),
        DVC_NO_ANALYTICS="1",
        GIT_AUTHOR_NAME="t",
        GIT_AUTHOR_EMAIL="t@example.com",
        GIT_COMMITTER_NAME="t",
        GIT_COMMITTER_EMAIL="t@example.com",
    )
    sh(["git", "init", "-q"], root, env)
    sh(["git", "add", "-A"], root, env)
    sh(["git", "commit", "-qm", "tiny"], root, env)
    return root, env


def test_repro_then_experiments(project):
    root, env = project
    out = sh(["dvc", "repro"], root, env)
    assert ran(out) == {
        "check",
        "scrape",
        "split",
        "base_model",
        "prompts",
        "generate@vanilla",
        "mix",
        "train",
        "evaluate",
        "reference",
        *FINETUNING,
        "fid_reference",
        *MEASURE,
        "clip_zero_shot",
        "img2img@img2img",
        "filter@vanilla_filtered",
        "real@pool",
    }
    # Every bad file is counted under its reason; the good ones of all three classes are there.
    scrape = json.loads((root / "metrics/scrape.json").read_text())
    assert scrape["skipped"] == {"duplicate": 1, "not_an_image": 3, "hidden_file": 1}, scrape
    assert scrape["images"] == sum(IMAGES.values())
    filtered = json.loads((root / "metrics/filter/vanilla_filtered.json").read_text())
    for source in SOURCES:
        count = {"vanilla": 24, "vanilla_filtered": 24}.get(source, 12)  # vanilla: 2 x 12 candidates for its filter
        assert len(list((root / "data/synthetic" / source / "quadrat_ä").glob("*.png"))) == count
        fid = json.loads((root / f"metrics/fid/{source}.json").read_text())
        assert fid["fid"] >= 0 and set(fid["per_class"]) == set(CLASSES)
        assert set(json.loads((root / f"metrics/recognise/{source}.json").read_text())["per_class"]) == set(CLASSES)
    assert set(json.loads((root / "metrics/textual_inversion/red circle.json").read_text())) >= {"seconds"}
    # img2img: every image is a redrawn real image of d_original; the filter counted every vanilla candidate.
    originals = {r["file"] for r in read_csv(root / "data/original/manifest.csv")}
    assert {r["parent"] for r in read_csv(root / "data/synthetic/img2img/manifest.csv")} == originals
    assert all(v["kept"] + v["dropped"] == 24 for v in filtered["per_class"].values())
    # the pool: split.pool_per_class = 4 of what 12 original + 5 test leave (Triangle's 19 leave 2)
    pool = {c: len(list((root / "data/synthetic/pool" / c).glob("*.png"))) for c in CLASSES}
    assert pool == {"red circle": 4, "quadrat_ä": 4, "Triangle": 2}
    assert not {r["file"] for r in read_csv(root / "data/pool/manifest.csv")} & originals
    metrics = json.loads((root / "metrics/evaluate.json").read_text())
    assert metrics["test_images"] == 5 * len(CLASSES) and set(metrics["per_class_accuracy"]) == set(CLASSES)
    assert json.loads((root / "metrics/mix.json").read_text())["composition"] == "30 real + 0 vanilla (p = 0)"
    sh(["git", "add", "-A"], root, env)
    sh(["git", "commit", "-qm", "baseline"], root, env)

    # A rejected param touches nothing: the check stage stops DVC before it deletes any output.
    before = digests(root)
    out = sh(["dvc", "exp", "run", "-S", "mix.p=1.5"], root, env, ok=False)
    assert "mix.p = 1.5 is not allowed" in out and ran(out) == {"check"}
    assert digests(root) == before
    sh(["git", "checkout", "params.yaml"], root, env)
    # A class name that is a path inside its folder: DVC builds its stages, `check` refuses it before any runs.
    names = ", ".join(f'"{c}"' for c in [*CLASSES, "a/b"])
    out = sh(["dvc", "exp", "run", "-S", f"classes=[{names}]"], root, env, ok=False)
    assert "may not hold /" in out and ran(out) == {"check"}
    assert digests(root) == before
    sh(["git", "checkout", "params.yaml"], root, env)

    # The first command a user types augments: p = 0.5 of the default source, vanilla. It reruns
    # exactly mix, train and evaluate (and the check of the changed params.yaml).
    out = sh(["dvc", "exp", "run", "-S", "mix.p=0.5"], root, env)
    assert ran(out) == {"check", "mix", "train", "evaluate"}
    mix = json.loads((root / "metrics/mix.json").read_text())
    assert (mix["train_images"], mix["synthetic_images"]) == (30, 15)  # 3 classes x 10, of them 3 x 5
    diff = sh(["dvc", "metrics", "diff"], root, env)
    assert "metrics/mix.json" in diff and "synthetic_images" in diff

    # img2img as the source: the children of validation images stay out of training.
    out = sh(["dvc", "exp", "run", "-S", "mix.source=img2img", "-S", "mix.p=0.5"], root, env)
    assert ran(out) == {"check", "mix", "train", "evaluate"}
    val = {r["file"] for r in read_csv(root / "data/mixed/val.csv")}
    parents = {
        f"data/synthetic/img2img/{r['file']}": f"data/original/{r['parent']}"
        for r in read_csv(root / "data/synthetic/img2img/manifest.csv")
    }
    trained = [r["file"] for r in read_csv(root / "data/mixed/train.csv") if r["origin"] == "synthetic"]
    assert len(trained) == 15 and not {parents[f] for f in trained} & val
    sh(["git", "checkout", "params.yaml"], root, env)

    # Setting p back restores every stage from the run-cache without recomputing.
    out = sh(["dvc", "exp", "run", "-S", "mix.p=0.0"], root, env)
    assert ran(out) <= {"check"} and restored(out) >= {"mix", "train", "evaluate"}
    assert json.loads((root / "metrics/mix.json").read_text())["synthetic_images"] == 0

    # Editing the user's dataset is a change DVC sees.
    pattern(999).save(root / "data/input/shapes/Triangle/new.png")
    status = json.loads(sh(["dvc", "status", "--json"], root, env))
    assert set(status) == {"scrape"}, status
    (root / "data/input/shapes/Triangle/new.png").unlink()

    # A generation param touches the three generation stages and nothing upstream (base model,
    # fine-tuning); `dvc status` says so without the cost of running them (the DreamBooth run below
    # shows a changed synthetic set rerunning what follows it).
    kept = (root / "params.yaml").read_text()
    params = yaml.safe_load(kept)
    params["generate"]["steps"] = 3
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False, allow_unicode=True))
    status = json.loads(sh(["dvc", "status", "--json"], root, env))
    assert set(status) == {
        "check",
        "generate@vanilla",
        "generate_finetuned@dreambooth",
        "generate_finetuned@textual_inversion",
    }
    (root / "params.yaml").write_text(kept)

    # A DreamBooth param retrains DreamBooth, regenerates and measures its set (not the reference
    # statistics); the mix (of vanilla images here) is rebuilt identical, so training stops there.
    # Vanilla and Textual Inversion are untouched.
    out = sh(["dvc", "exp", "run", "-S", "dreambooth.steps=3"], root, env)
    assert ran(out) == {
        "check",
        *(f"train_dreambooth@{c}" for c in CLASSES),
        "generate_finetuned@dreambooth",
        "measure_finetuned@dreambooth",
        "mix",
    }

    shows = sh(["dvc", "exp", "show", "--csv"], root, env)
    assert "mix.p" in shows and "0.5" in shows

    sh(["dvc", "plots", "show", "-o", "dvc_plots"], root, env)
    html = (root / "dvc_plots/index.html").read_text()
    for title in ("Training loss", "Confusion matrix", "Per-class test accuracy", "plots/samples/vanilla.png"):
        assert title in html

    # The study report reads these experiments through `dvc exp show --json`.
    sh(["python", "-m", "diffaug", "report", "--out", "reports"], root, dict(env, PYTHONPATH=str(root / "src")))
    summary = (root / "reports/summary.md").read_text()
    assert "vanilla" in summary and list((root / "reports").glob("accuracy_vs_p*.png"))
