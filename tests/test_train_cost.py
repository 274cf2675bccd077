"""The train stage records its budget (steps, images seen), what it cost and where it ran."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from diffaug.device import Meter
from diffaug.io import sha256_file, write_csv, write_json
from diffaug.study.cost import cost_summary
from helpers import params_file, pattern

REPO = Path(__file__).resolve().parents[1]


def scratch_mix(folder: Path, images_per_class: int, **train) -> None:
    """A scratch repo for the train stage: a mix of `images_per_class` training images a class, params."""
    rows = {"train": [], "val": []}
    for c, first in (("cat", 0), ("dog", 100)):
        (folder / "img" / c).mkdir(parents=True)
        for i in range(first, first + images_per_class + 1):
            f = folder / "img" / c / f"{i}.png"
            pattern(i, 16).save(f)
            rows["val" if i == first else "train"].append(
                {"class": c, "file": f"img/{c}/{i}.png", "origin": "original", "sha256": sha256_file(f)}
            )
    for split, rs in rows.items():
        write_csv(folder / "data/mixed" / f"{split}.csv", rs, ["class", "file", "origin", "sha256"])
    write_json(folder / "data/mixed/classes.json", ["cat", "dog"])
    params_file(
        folder,
        classes=["cat", "dog"],
        scrape={"source": "folder", "path": str(folder)},
        train={"batch_size": 4, "image_size": 16, "device": "cpu", **train},
    )


def train_stage(folder: Path, images_per_class: int, env: dict | None = None, **train) -> dict:
    """Run `python -m diffaug.stages.train` on a mix of `images_per_class` training images a class."""
    scratch_mix(folder, images_per_class, **train)
    proc = subprocess.run(
        [sys.executable, "-m", "diffaug.stages.train"],
        cwd=folder,
        capture_output=True,
        text=True,
        env=dict(env or os.environ, PYTHONPATH=str(REPO / "src")),
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads((folder / "metrics/train/metrics.json").read_text())


def test_a_meter_reads_the_time_and_throughput_of_what_ran_since_it_started():
    meter = Meter(torch.device("cpu"))
    time.sleep(0.5)
    reading = meter.reading(50, "images")
    assert reading["seconds"] == pytest.approx(0.5, abs=0.15)  # rounded to 0.1 s, plus scheduling
    assert reading["images_per_second"] == pytest.approx(100, rel=0.25)
    assert (reading["device"], reading["peak_memory_gb"]) == ("cpu", None)
    assert meter.reading(0, "steps")["steps_per_second"] is None  # nothing done: no rate


@pytest.mark.slow  # four fresh processes importing torch and DVCLive: about a minute on 2 busy cores
def test_a_smaller_mix_trains_as_many_steps_and_the_metrics_say_so(tmp_path):
    for n in (2, 9):
        start = time.perf_counter()
        m = train_stage(tmp_path / str(n), n, steps=6, val_every=3, threads=1)
        wall = time.perf_counter() - start
        assert (m["budget"], m["steps"], m["images_seen"]) == ("steps", 6, 24)
        assert m["host"]["threads"] == 1 and m["host"]["torch"] and m["host"]["cpu"]
        assert m["device"] == "cpu" and m["peak_memory_gb"] is None
        # The training's own time: more than nothing, less than the whole process (torch's import aside),
        # and the rate is the images seen over it.
        assert 0 < m["seconds"] < wall
        assert m["images_per_second"] == pytest.approx(24 / m["seconds"], rel=0.1)
        # `diffaug cost` counts those seconds as the train stage's CPU time.
        cost = cost_summary(tmp_path / str(n) / "metrics", {}, {})
        assert cost["stages"]["train"] == {"hours": round(m["seconds"] / 3600, 4), "gpu": False, "device": "cpu"}
        assert (cost["cpu_hours"], cost["gpu_hours"]) == (round(m["seconds"] / 3600, 4), 0.0)
    # The paper's fixed epochs: the smaller mix takes fewer steps, and the metrics show it.
    small, large = (train_stage(tmp_path / f"e{n}", n, steps=None, epochs=2) for n in (2, 9))
    assert (small["budget"], small["steps"], small["images_seen"]) == ("epochs", 2, 8)
    assert (large["steps"], large["images_seen"]) == (10, 36)


@pytest.mark.slow  # two fresh training processes: about 30 s
def test_one_experiment_gives_the_same_numbers_whatever_the_queue_runs_it_with(tmp_path):
    """The queue gives each worker cores / study.jobs threads (OMP_NUM_THREADS); CPU float results
    depend on the thread count, so train.threads fixes it and study.jobs 1 and 4 agree to the bit."""
    from diffaug.study.queue import worker_env

    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    one, four = (
        train_stage(tmp_path / str(jobs), 6, worker_env(jobs, env), steps=4, val_every=2, threads=1) for jobs in (1, 4)
    )
    assert worker_env(4, env).get("OMP_NUM_THREADS") != worker_env(1, env).get("OMP_NUM_THREADS")
    timing = ("seconds", "images_per_second")
    assert {k: v for k, v in one.items() if k not in timing} == {k: v for k, v in four.items() if k not in timing}
    assert sha256_file(tmp_path / "1/models/classifier/model.safetensors") == sha256_file(
        tmp_path / "4/models/classifier/model.safetensors"
    )
