"""How recognisable a fine-tuning method's images are, for a few settings, on a few classes.

Trains DreamBooth (or Textual Inversion) per class with its params section overridden by each setting,
draws 50 images per class with the `generate` params, and reports the share that `models/reference` (a
classifier of the real images) assigns to their class: the number of `measure_finetuned@<source>`'s
recognise metric, without running the whole pipeline. Run after `dvc repro` (it needs models/base,
models/reference, data/original):

    PYTHONPATH=src python benchmarks/finetune_sweep.py dreambooth '[{"mode": "lora", "lora_lr": 1.0e-3}]' nine,six
    PYTHONPATH=src python benchmarks/finetune_sweep.py textual_inversion '[{"lr": 1.0e-3}, {"images": 30}]' nine
"""

import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from diffaug.classify.classifier import classify_manifest
from diffaug.diffusion import dreambooth, textual_inversion
from diffaug.diffusion.finetune import load_pixels, native_resolution, pick_instances
from diffaug.diffusion.jobs import Settings, plan, run_batch, to_png
from diffaug.diffusion.loading import load_pipeline, read_source
from diffaug.params import load_params
from diffaug.rules import token_of

CPU, PER_CLASS = torch.device("cpu"), 50


def finetune(method: str, pipe, label: str, params) -> str:
    """Train one class in place on `pipe`; return the generation prompt."""
    resolution = params.resolution or native_resolution(pipe)
    if method == "dreambooth":
        files = pick_instances(Path("data/original") / label, params.instance_images, params.seed, label)
        prior = None
        if params.prior_preservation:
            paths = dreambooth.prior_images(read_source(), params.class_prompt.format(label), label, params, resolution)
            prior = load_pixels(paths, resolution)
        dreambooth.train_dreambooth(
            pipe,
            load_pixels(files, resolution),
            params.prompt.format(label),
            prior,
            params.class_prompt.format(label),
            params,
            log=lambda *_: None,
        )
        return params.prompt.format(label)
    files = pick_instances(Path("data/original") / label, params.images, params.seed, label)
    textual_inversion.train_textual_inversion(pipe, load_pixels(files, resolution), label, params, log=lambda *_: None)
    return textual_inversion.fill(params.prompt, token_of(label), label)


def recognised(method: str, overrides: dict, labels: list[str], out: Path) -> dict[str, float]:
    params = load_params()
    section = getattr(params, method)
    section = type(section).model_validate({**section.model_dump(), **overrides})
    g, classes = params.generate, list(params.classes)
    settings = Settings(
        model="sweep",
        scheduler=g.scheduler,
        steps=g.steps,
        guidance=g.guidance,
        negative_prompt=g.negative_prompt,
        height=None,
        width=None,
        save_size=g.save_size,
        dtype="float32",
    )
    rows = []
    for label in labels:
        pipe = load_pipeline(read_source(), CPU, torch.float32, g.scheduler)
        jobs = plan({label: [finetune(method, pipe, label, section)]}, PER_CLASS, g.seed)
        (out / label).mkdir(parents=True)
        for job, image in zip(jobs, run_batch(pipe, jobs, settings)):
            (out / job.file).write_bytes(to_png(image, g.save_size))
            rows.append({"class": label, "file": job.file})
    y_true, y_pred = classify_manifest(Path("models/reference"), rows, classes, CPU, 256, out)
    return {c: round(float((y_pred[y_true == classes.index(c)] == classes.index(c)).mean()), 2) for c in labels}


def main() -> None:
    method, settings, labels = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3].split(",")
    for overrides in settings:
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            per_class = recognised(method, overrides, labels, Path(tmp))
        mean = sum(per_class.values()) / len(per_class)
        print(
            f"{method} {json.dumps(overrides)}: {mean:.1%} recognised {per_class} "
            f"({time.perf_counter() - start:.0f} s)",
            flush=True,
        )


if __name__ == "__main__":
    main()
