"""The CPU claims of issue 15, old path (benchmarks/baseline.py) against new, on this machine.

    PYTHONPATH=src python benchmarks/data_path.py [--repeats 5] [--images 1000] [--threads N] [--out FILE]

- crop and flip of a batch of 256 uint8 images at 224 px (median of `repeats`, alternating old/new);
- a training epoch of the built-in default (scikit-learn's digits at params.yaml's train.image_size,
  train.batch_size, its 85% training share of split.original_per_class; ResNet-18 from scratch);
- generation of `images` images with the built-in model's architecture (random weights: speed does not
  depend on them) at params.yaml's generate.* with save_size null: PNGs written serially vs overlapped.
Numbers depend on the machine and its load; quote them with its description.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from diffaug.classify.data import Augment, load_image
from diffaug.classify.model import build_model
from diffaug.classify.train import fit, seed_everything
from diffaug.data.images import png_bytes
from diffaug.data.scrape import digits
from diffaug.diffusion.jobs import fill_cache, plan
from diffaug.legacy import OldAugment, old_fit_epochs, old_generate
from diffaug.params import load_params

CPU = torch.device("cpu")


def alternate(fns: dict, repeats: int) -> dict:
    """Median seconds of each function, run in turns so that load changes hit both alike."""
    times = {name: [] for name in fns}
    for fn in fns.values():
        fn()  # warm-up
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def crop_flip(repeats: int) -> dict:
    x = torch.randint(0, 256, (256, 3, 224, 224), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    old, new = OldAugment("standard", True, torch.Generator()), Augment("standard", True, torch.Generator())
    t = alternate({"old": lambda: old(x), "new": lambda: new(x)}, repeats)
    return {
        "setting": "224 px, batch 256, crop + flip",
        "old_seconds": round(t["old"], 4),
        "new_seconds": round(t["new"], 4),
        "speedup": round(t["old"] / t["new"], 2),
    }


def epoch(repeats: int) -> dict:
    params = load_params()
    cfg = params.train.model_copy(update=dict(epochs=1))
    per_class = round(params.split.original_per_class * (1 - params.mix.val_fraction))
    counts, images, labels = {}, [], []
    for c in digits(params.classes, params.scrape.digits_size):
        if counts.get(c.label, 0) < per_class:
            counts[c.label] = counts.get(c.label, 0) + 1
            images.append(load_image(png_bytes(c.image), cfg.image_size))
            labels.append(params.classes.index(c.label))
    train = (torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous(), torch.tensor(labels))
    none = (train[0][:0], train[1][:0])

    def old():
        g = seed_everything(cfg.seed)
        old_fit_epochs(build_model(len(params.classes), "scratch", False), train, cfg, CPU, g)

    def new():
        g = seed_everything(cfg.seed)
        fit(build_model(len(params.classes), "scratch", False), train, none, cfg, CPU, g)

    t = alternate({"old": old, "new": new}, repeats)
    return {
        "setting": f"built-in default: {len(labels)} images at {cfg.image_size} px, batch {cfg.batch_size}, "
        f"augment {cfg.augment}, one epoch without validation",
        "old_seconds": round(t["old"], 3),
        "new_seconds": round(t["new"], 3),
        "speedup": round(t["old"] / t["new"], 3),
    }


def generation(n: int, repeats: int) -> dict:
    from diffaug.diffusion.loading import load_pipeline, read_source
    from diffaug.diffusion.source import draw_settings
    from diffaug.diffusion.tiny.model import build_models, noise_schedule, save_pipeline
    from diffaug.io import write_json

    g = load_params().generate
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "base"
        save_pipeline(base / "pipeline", *build_models(0, base / "tokenizer_src"), noise_schedule())
        write_json(base / "source.json", {"model": "builtin:tiny", "revision": None, "commit": None})
        pipe = load_pipeline(read_source(base), CPU, torch.float32, g.scheduler, base=base)
        settings = draw_settings(g.model_copy(update={"save_size": None}), "bench", torch.float32)
        classes = load_params().classes
        jobs = plan({c: [f"a photo of the digit {c}"] for c in classes}, n // len(classes), g.seed)
        runs = [0]

        def cache() -> Path:  # a fresh cache per run: every image is drawn and written
            runs[0] += 1
            return Path(tmp) / f"cache{runs[0]}"

        t = alternate(
            {
                "serial": lambda: old_generate(pipe, jobs, settings, g.batch_size, cache()),
                "overlapped": lambda: fill_cache(pipe, jobs, settings, g.batch_size, cache=cache()),
            },
            repeats,
        )
    return {
        "setting": f"{len(jobs)} images, built-in architecture, {g.scheduler} {g.steps} steps, batch "
        f"{g.batch_size}, save_size null",
        "serial_seconds": round(t["serial"], 2),
        "overlapped_seconds": round(t["overlapped"], 2),
        "speedup": round(t["serial"] / t["overlapped"], 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--only", choices=["crop_flip", "epoch", "generation"], action="append")
    parser.add_argument(
        "--threads", type=int, help="torch threads (default: torch's); 1 is steadier on a shared machine"
    )
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
        f"torch {torch.__version__}"
    )
    results = {}
    for name in args.only or ["crop_flip", "epoch", "generation"]:
        results[name] = generation(args.images, args.repeats) if name == "generation" else globals()[name](args.repeats)
        print(name, json.dumps(results[name]), flush=True)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
