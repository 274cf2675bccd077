"""How recognisable Textual Inversion's images are, for a few settings, on a few classes.

Trains a token per class with `textual_inversion` params overridden by each setting, draws 50 images
per class with the `generate` params, and reports the share that `models/reference` (a classifier of
the real images) assigns to their class: the number of `recognise@textual_inversion`, without
running the whole pipeline. Run after `dvc repro` (it needs models/base, models/reference, data/original):

    PYTHONPATH=src python benchmarks/textual_inversion_sweep.py '[{"lr": 1.0e-3}, {"images": 30}]' nine,six
"""
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from diffaug.classify.classifier import classify_manifest
from diffaug.config import load_params
from diffaug.diffusion.finetune import load_pixels, native_resolution, pick_instances
from diffaug.diffusion.generate import Settings, plan, run_batch, to_png
from diffaug.diffusion.pipeline import load_pipeline, read_source
from diffaug.diffusion.textual_inversion import fill, placeholder, train_textual_inversion

CPU, PER_CLASS = torch.device("cpu"), 50


def recognised(overrides: dict, labels: list[str], out: Path) -> dict[str, float]:
    params = load_params()
    ti, g, classes = dataclasses.replace(params.textual_inversion, **overrides), params.generate, list(params.classes)
    settings = Settings(model="sweep", scheduler=g.scheduler, steps=g.steps, guidance=g.guidance,
                        negative_prompt=g.negative_prompt, height=None, width=None, save_size=g.save_size,
                        dtype="float32")
    rows = []
    for label in labels:
        pipe = load_pipeline(read_source(), CPU, torch.float32, g.scheduler)
        files = pick_instances(Path("data/original") / label, ti.images, ti.seed, label)
        train_textual_inversion(pipe, load_pixels(files, ti.resolution or native_resolution(pipe)), label, ti,
                                log=lambda *_: None)
        jobs = plan({label: [fill(ti.prompt, placeholder(label), label)]}, PER_CLASS, g.seed)
        (out / label).mkdir(parents=True)
        for job, image in zip(jobs, run_batch(pipe, jobs, settings)):
            (out / job.file).write_bytes(to_png(image, g.save_size))
            rows.append({"class": label, "file": job.file})
    y_true, y_pred = classify_manifest(Path("models/reference"), rows, classes, CPU, 256, out)
    return {c: round(float((y_pred[y_true == classes.index(c)] == classes.index(c)).mean()), 2) for c in labels}


def main() -> None:
    settings, labels = json.loads(sys.argv[1]), sys.argv[2].split(",")
    for overrides in settings:
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            per_class = recognised(overrides, labels, Path(tmp))
        mean = sum(per_class.values()) / len(per_class)
        print(f"{json.dumps(overrides)}: {mean:.1%} recognised {per_class} ({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
