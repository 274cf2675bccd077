"""img2img speed at several strengths against text-to-image, on the base model in models/base.

    PYTHONPATH=src python benchmarks/img2img.py [--images 100] [--strengths 0.25,0.5,0.75,1.0]

img2img at strength s starts at step (1 - s) x steps, so it runs int(s x steps) UNet calls (one
batched call per step: guidance is batched) plus the VAE encode of the parent. Reports images/s
and UNet calls per batch for each strength and for text-to-image at the same steps (params.yaml's
img2img.steps, generate.batch_size). Run `dvc repro base_model split` first. Numbers depend on the
machine; quote them with its description.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch
from generation import count_unet_calls  # benchmarks/generation.py (the script's folder is on sys.path)


def main() -> None:
    from diffaug.device import pick_device
    from diffaug.diffusion.img2img import FromParents, plan_img2img
    from diffaug.diffusion.jobs import Settings, plan, run_batch
    from diffaug.diffusion.loading import load_pipeline, pick_dtype, read_source, speed_up
    from diffaug.io import read_csv
    from diffaug.params import load_params

    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--strengths", default="0.25,0.5,0.75,1.0")
    args = parser.parse_args()
    params = load_params()
    g, settings = params.generate, params.img2img
    device = pick_device(g.device)
    dtype = pick_dtype(device, g.dtype)
    source = read_source()
    base = speed_up(load_pipeline(source, device, dtype, g.scheduler), device, g.batch_size, g.compile, g.cpu_offload)
    pipe = FromParents.over(base, Path("data/original"), g.resolution)
    prompts = {c: [f"a photo of the digit {c}"] for c in params.classes}
    parents: dict[str, list] = {c: [] for c in params.classes}
    for r in read_csv("data/original/manifest.csv"):
        parents[r["class"]].append((r["file"], r["sha256"]))
    per_class = max(1, args.images // len(prompts))
    common = dict(
        model="bench",
        scheduler=g.scheduler,
        steps=settings.steps,
        guidance=settings.guidance,
        negative_prompt="",
        height=g.resolution,
        width=g.resolution,
        save_size=None,
        dtype=str(dtype),
    )
    print(
        f"model {source['model']}, device {device} ({platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads), dtype {dtype}, {per_class * len(prompts)} images, "
        f"{settings.steps} steps, batch {g.batch_size}"
    )

    def measure(p, jobs) -> tuple[float, float]:
        calls = count_unet_calls(p)
        run_batch(p, jobs[: g.batch_size], Settings(**common))  # warm-up
        calls[0] = 0
        start = time.perf_counter()
        for i in range(0, len(jobs), g.batch_size):
            run_batch(p, jobs[i : i + g.batch_size], Settings(**common))
        seconds = time.perf_counter() - start
        return len(jobs) / seconds, calls[0] / -(-len(jobs) // g.batch_size)

    ips, calls = measure(base, plan(prompts, per_class, 0))
    print(f"txt2img:        {ips:6.2f} images/s, {calls:5.1f} UNet calls per batch")
    for s in (float(x) for x in args.strengths.split(",")):
        ips_s, calls_s = measure(pipe, plan_img2img(prompts, parents, {c: per_class for c in prompts}, [s], 0))
        print(
            f"img2img s={s:<5g} {ips_s:6.2f} images/s, {calls_s:5.1f} UNet calls per batch "
            f"({ips_s / ips:.2f}x txt2img's speed)"
        )


if __name__ == "__main__":
    main()
