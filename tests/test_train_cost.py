"""The train stage records what it cost: wall time, images/s, device, peak GPU memory."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from diffaug.io import sha256_file, write_csv, write_json
from helpers import params_file, pattern

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # a fresh process importing torch and DVCLive: about 30 s on 2 busy cores
def test_train_stage_metrics_carry_the_cost(tmp_path):
    rows = {"train": [], "val": []}
    for c, seeds in (("cat", range(0, 6)), ("dog", range(10, 16))):
        (tmp_path / "img" / c).mkdir(parents=True)
        for i in seeds:
            f = tmp_path / "img" / c / f"{i}.png"
            pattern(i, 16).save(f)
            rows["val" if i % 6 == 5 else "train"].append(
                {"class": c, "file": f"img/{c}/{i}.png", "origin": "original", "sha256": sha256_file(f)})
    for split, rs in rows.items():
        write_csv(tmp_path / "data/mixed" / f"{split}.csv", rs, ["class", "file", "origin", "sha256"])
    write_json(tmp_path / "data/mixed/classes.json", ["cat", "dog"])
    params_file(tmp_path, classes=["cat", "dog"], scrape={"source": "folder", "path": str(tmp_path)},
                train={"epochs": 2, "batch_size": 4, "image_size": 16, "device": "cpu"})
    proc = subprocess.run([sys.executable, "-m", "diffaug.stages.train"], cwd=tmp_path, capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(REPO / "src")), timeout=120)
    assert proc.returncode == 0, proc.stderr
    m = json.loads((tmp_path / "metrics/train/metrics.json").read_text())
    assert m["device"] == "cpu" and m["peak_memory_gb"] is None and m["seconds"] >= 0
    assert m["images_per_second"] > 0  # 10 training images x 2 epochs over the wall time
