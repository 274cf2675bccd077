"""base_model with a hub id: pinned to a commit from the Hugging Face cache; offline errors are clear."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def run_stage(cwd: Path, hf_home: Path, stage: str = "base_model", args: tuple = (), **params):
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    for section, values in params.items():
        raw[section].update(values)
    (cwd / "params.yaml").write_text(yaml.safe_dump(raw))
    # A fresh process: the Hugging Face libraries read HF_HOME and HF_HUB_OFFLINE when imported.
    return subprocess.run(
        [sys.executable, "-m", f"diffaug.stages.{stage}", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={
            "PYTHONPATH": str(REPO / "src"),
            "PATH": "/usr/bin:/bin",
            "HF_HOME": str(hf_home),
            "HF_HUB_OFFLINE": "1",
            "DIFFAUG_CACHE": str(cwd / "cache"),
        },
    )


def test_offline_without_weights_is_one_sentence(tmp_path):
    proc = run_stage(tmp_path, tmp_path / "hf", base={"model": "stable-diffusion-v1-5/stable-diffusion-v1-5"})
    assert proc.returncode == 2, proc.stderr
    line = proc.stderr.strip()
    assert "\n" not in line
    assert line.startswith(
        "error: the base model stable-diffusion-v1-5/stable-diffusion-v1-5 at revision main "
        "is not in the Hugging Face cache"
    )
    assert "hf download stable-diffusion-v1-5/stable-diffusion-v1-5 --revision main" in line
    assert not (tmp_path / "models").exists() or not any((tmp_path / "models").iterdir())


def place_in_hub_cache(hf_home: Path, repo_id: str, pipeline: Path) -> None:
    """What `hf download` leaves behind: snapshots/<commit>/ and refs/main."""
    repo = hf_home / "hub" / ("models--" + repo_id.replace("/", "--"))
    shutil.copytree(pipeline, repo / "snapshots" / COMMIT)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)


def test_hub_model_is_pinned_and_generates_offline(tmp_path, tiny_base):
    place_in_hub_cache(tmp_path / "hf", "someone/tiny-sd", tiny_base / "pipeline")
    proc = run_stage(tmp_path, tmp_path / "hf", base={"model": "someone/tiny-sd", "revision": "main"})
    assert proc.returncode == 0, proc.stderr
    source = json.loads((tmp_path / "models/base/source.json").read_text())
    assert source == {"model": "someone/tiny-sd", "revision": "main", "commit": COMMIT}
    assert not (tmp_path / "models/base/pipeline").exists()  # weights stay in the Hugging Face cache

    (tmp_path / "data").mkdir()
    (tmp_path / "data/prompts.json").write_text(
        json.dumps([{"class": "three", "prompt": "a photo of the digit three"}])
    )
    proc = run_stage(
        tmp_path,
        tmp_path / "hf",
        stage="generate",
        args=["vanilla"],
        base={"model": "someone/tiny-sd"},
        generate={"per_class": 2, "steps": 2, "batch_size": 2},
        split={"original_per_class": None},
    )  # n is unknown: the grid check waits for mix
    assert proc.returncode == 0, proc.stderr
    manifest = (tmp_path / "data/synthetic/vanilla/manifest.csv").read_text().splitlines()
    # 2 a class x 2.0 candidates: the default params' vanilla_filtered asks vanilla for twice its count
    assert len(manifest) == 1 + 4 and f"someone/tiny-sd,{COMMIT}" in manifest[1]
    assert (tmp_path / "plots/samples/vanilla.png").exists()
