"""Generation speed of the base model in models/base: our default settings vs. a naive loop.

    PYTHONPATH=src python benchmarks/generation.py [--images 40]

Reports images/s and UNet forward calls per image for
  - default: params.yaml's generate.* (batched prompts, DPM-Solver++ at generate.steps, CFG batched
    into one UNet call per step),
  - naive:   one image per call, 50 PNDM steps (diffusers' SD default), as most scripts do.
Run `dvc repro base_model` first. Numbers depend on the machine; quote them with its description.
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from diffaug.device import pick_device
from diffaug.diffusion.jobs import Settings, plan, run_batch
from diffaug.diffusion.loading import load_pipeline, pick_dtype, read_source, set_scheduler, speed_up
from diffaug.params import load_params


def count_unet_calls(pipe) -> list[int]:
    calls = [0]
    pipe.unet.register_forward_hook(lambda *a: calls.__setitem__(0, calls[0] + 1))
    return calls


def measure(pipe, jobs, settings, batch_size) -> tuple[float, float]:
    calls = count_unet_calls(pipe)
    run_batch(pipe, jobs[:batch_size], settings)  # warm-up (allocations, compile)
    calls[0] = 0
    start = time.perf_counter()
    for i in range(0, len(jobs), batch_size):
        run_batch(pipe, jobs[i : i + batch_size], settings)
    seconds = time.perf_counter() - start
    return len(jobs) / seconds, calls[0] / len(jobs)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=40)
    args = parser.parse_args()
    params = load_params()
    g = params.generate
    device = pick_device(g.device)
    dtype = pick_dtype(device, g.dtype)
    source = read_source()
    pipe = speed_up(load_pipeline(source, device, dtype, g.scheduler), device, g.batch_size, g.compile, g.cpu_offload)
    prompts = {c: [f"a photo of the digit {c}"] for c in params.classes}
    jobs = plan(prompts, max(1, args.images // len(prompts)), g.seed)
    base = dict(
        model="bench", negative_prompt="", height=g.resolution, width=g.resolution, save_size=None, dtype=str(dtype)
    )

    print(
        f"model {source['model']}, device {device} ({platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads), dtype {dtype}, {len(jobs)} images"
    )
    default = Settings(scheduler=g.scheduler, steps=g.steps, guidance=g.guidance, **base)
    ips, calls = measure(pipe, jobs, default, g.batch_size)
    print(
        f"default: batch {g.batch_size}, {g.scheduler} {g.steps} steps: {ips:.2f} images/s, "
        f"{calls:.2f} UNet calls per image"
    )
    set_scheduler(pipe, "pndm")
    naive = Settings(scheduler="pndm", steps=50, guidance=g.guidance, **base)
    ips_naive, calls_naive = measure(pipe, jobs, naive, 1)
    print(f"naive:   batch 1, pndm 50 steps: {ips_naive:.2f} images/s, {calls_naive:.2f} UNet calls per image")
    print(f"speed-up: {ips / ips_naive:.1f}x")


if __name__ == "__main__":
    main()
