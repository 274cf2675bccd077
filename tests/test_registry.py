"""The sources registry: a new source of an existing kind is one params.yaml entry, no dvc.yaml edit."""

import os
import re
import shutil
import subprocess
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def test_one_params_entry_adds_a_source_s_stages(tmp_path):
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    for f in files:  # the repository as a fresh clone has it
        if (REPO / f).is_file() and not f.startswith("tests/"):
            (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / f, tmp_path / f)
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    params["sources"]["filtered"]["dreambooth_filtered"] = {
        "of": "dreambooth",
        "filter": "confidence",
        "candidates": 1.0,
    }
    params["sources"]["img2img"]["img2img_ti"] = {}
    params["sources"]["real"]["more_real"] = {}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = dict(os.environ, DVC_NO_ANALYTICS="1")
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    # --force: a fresh clone has none of the outputs, which a plain dry run stops at
    proc = subprocess.run(["dvc", "repro", "--dry", "--force"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ran = set(re.findall(r"Running stage '([^']+)'", proc.stdout))
    assert {
        "filter@dreambooth_filtered",
        "measure_filtered@dreambooth_filtered",
        "img2img@img2img_ti",
        "measure_img2img@img2img_ti",
        "filter@vanilla_filtered",
        "img2img@img2img",
        "real@more_real",
        "measure_real@more_real",
        "real@pool",
        "measure_real@pool",
    } <= ran
    assert (REPO / "dvc.yaml").read_text() == (tmp_path / "dvc.yaml").read_text()
