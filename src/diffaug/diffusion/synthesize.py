"""One synthetic source end to end: plan the images, generate what the cache lacks, write the set.

Used by `generate_vanilla` and `generate_finetuned`; runs alone or under `accelerate launch`
(each process takes every N-th batch; the main process assembles the output).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Optional

import torch
from tqdm import tqdm

from diffaug.config import Generate
from diffaug.device import pick_device
from diffaug.diffusion.generate import Settings, cache_key, cached_path, collect, generate, plan
from diffaug.diffusion.pipeline import pick_dtype, speed_up
from diffaug.io import atomic_dir, write_json
from diffaug.plots import sample_grid


def prompts_by_class(records: list[dict]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for r in records:
        out.setdefault(r["class"], []).append(r["prompt"])
    return out


def synthesize(name: str, prompts: dict[str, list[str]], params: Generate, model_id: str, meta: dict,
               load: Callable[[torch.device, torch.dtype], object], out: Path, metrics: Path, grid: Path,
               weights: Optional[dict[str, str]] = None, switch: Optional[Callable[[object, str], None]] = None) -> dict:
    """Make `out/<class>/<index>.png` + manifest for one source; `load` builds the pipeline.

    Fine-tuned sources pass `weights` (a fingerprint per class, part of each image's cache key) and
    `switch`, which puts a class's weights into the pipeline.
    """
    from accelerate import PartialState

    state = PartialState()
    device = state.device if state.num_processes > 1 else pick_device(params.device)
    dtype = pick_dtype(device, params.dtype)
    jobs = plan(prompts, params.per_class, params.seed, weights)
    settings = Settings(model=model_id, scheduler=params.scheduler, steps=params.steps, guidance=params.guidance,
                        negative_prompt=params.negative_prompt, height=params.resolution, width=params.resolution,
                        save_size=params.save_size, dtype=str(dtype).removeprefix("torch."))
    missing = sum(not cached_path(cache_key(j, settings)).exists() for j in jobs)
    start = time.perf_counter()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    counts = {"generated": 0, "reused": len(jobs), "batch_size": params.batch_size}
    if missing:  # a complete cache needs no model at all
        pipe = speed_up(load(device, dtype), device, params.batch_size, params.compile, params.cpu_offload,
                        params.resolution)
        with tqdm(total=len(jobs), desc=f"{name} (process {state.process_index})", unit="img",
                  disable=not state.is_local_main_process) as bar:
            counts = generate(pipe, jobs, settings, params.batch_size, state.process_index,
                              state.num_processes, progress=bar.update, switch=switch)
    seconds = time.perf_counter() - start
    state.wait_for_everyone()
    report = {"images": len(jobs), **counts, "seconds": round(seconds, 1), "device": device_name(device),
              "images_per_second": round(counts["generated"] / seconds, 3) if counts["generated"] else None,
              "peak_memory_gb": round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if device.type == "cuda" else None,
              "processes": state.num_processes}
    if state.is_main_process:
        with atomic_dir(out) as tmp:
            collect(jobs, settings, tmp, meta)
        grid.parent.mkdir(parents=True, exist_ok=True)
        sample_grid(out, list(prompts)).save(grid)
        write_json(metrics, report)
    return report


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
