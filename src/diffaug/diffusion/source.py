"""One synthetic source end to end: plan its images, fill the image cache with what it lacks (diffusion.jobs,
with a pipeline from diffusion.loading), write data/synthetic/<source>, its sample grid and its metrics.

Used by the stages `generate@<source>`, `generate_finetuned@<source>` and `img2img@<source>`; runs alone or
under `accelerate launch` (each process takes every N-th batch; the main process assembles the output).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Optional

import torch

from diffaug import paths
from diffaug.device import Meter, pick_device
from diffaug.diffusion.jobs import Job, Settings, assemble, cache_key, cached_path, fill_cache, plan
from diffaug.diffusion.loading import fingerprint, model_meta, pick_dtype, speed_up
from diffaug.diffusion.tiny.tokenizer import unknown_words
from diffaug.errors import DiffaugError
from diffaug.io import atomic_dir, read_json, sha256_tree, write_json
from diffaug.params import Generate
from diffaug.plots import sample_grid, save_grid
from diffaug.progress import bar


def prompts_by_class(records: list[dict]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for r in records:
        out.setdefault(r["class"], []).append(r["prompt"])
    return out


def vocabulary_check(base: dict, prompts: dict[str, list[str]]) -> list[str]:
    """The built-in model knows only its digit captions' words: for other words it draws a digit
    anyway. Say so loudly (and record it), so a smoke test on your own classes is not mistaken
    for a result."""
    if base["model"] != "builtin:tiny":
        return []
    unknown = unknown_words([p for ps in prompts.values() for p in ps])
    if unknown:
        print(
            f"WARNING: the built-in base model never learned the prompt words {', '.join(unknown)}: it will draw "
            "digits for them. For your own classes set base.model to a hub model (see README, "
            '"Models that fit a CPU or a small GPU").',
            file=sys.stderr,
        )
    return unknown


def make_source(
    name: str,
    prompts: dict[str, list[str]],
    params: Generate,
    base: dict,
    method: str,
    load: Callable[[torch.device, torch.dtype], object],
    weights: Optional[dict[str, str]] = None,
    switch: Optional[Callable[[object, str], None]] = None,
    jobs: Optional[list[Job]] = None,
) -> dict:
    """Make data/synthetic/<name>/<class>/<index>.png + manifest, metrics/generate/<name>.json and the
    sample grid plots/samples/<name>.png for one source drawn by the base model `base` (models/base's
    source.json), fine-tuned by `method` if not empty; `load` builds the pipeline.

    Fine-tuned sources pass `weights` (a fingerprint per class, part of each image's cache key) and
    `switch`, which puts a class's weights into the pipeline. img2img sources pass their `jobs`
    (with parents); the others get `params.per_class` jobs per class.
    """
    from accelerate import PartialState

    unknown = vocabulary_check(base, prompts)
    state = PartialState()
    device = state.device if state.num_processes > 1 else pick_device(params.device)
    dtype = pick_dtype(device, params.dtype)
    jobs = jobs or plan(prompts, params.per_class, params.seed, weights)
    settings = draw_settings(params, fingerprint(base), dtype)

    def pipeline():
        pipe = load(device, dtype)
        return speed_up(pipe, device, params.batch_size, params.compile, params.cpu_offload, params.resolution)

    meter = Meter(device)
    counts = fill_missing(name, jobs, settings, params.batch_size, state, pipeline, switch)
    record = meter.reading(counts["generated"], "images")
    state.wait_for_everyone()
    report = {"images": len(jobs), **counts, **record, "processes": state.num_processes, "unknown_words": unknown}
    if state.is_main_process:
        write_source(name, jobs, settings, model_meta(base, method), list(prompts), report)
    return report


def draw_settings(params: Generate, model_id: str, dtype: torch.dtype) -> Settings:
    return Settings(
        model=model_id,
        scheduler=params.scheduler,
        steps=params.steps,
        guidance=params.guidance,
        negative_prompt=params.negative_prompt,
        height=params.resolution,
        width=params.resolution,
        save_size=params.save_size,
        dtype=str(dtype).removeprefix("torch."),
    )


def fill_missing(name: str, jobs: list[Job], settings: Settings, batch_size: int, state, pipeline, switch) -> dict:
    """Draw the images of this process's batches that the cache lacks; a complete cache needs no model at all."""
    if all(cached_path(cache_key(j, settings)).exists() for j in jobs):
        return {"generated": 0, "reused": len(jobs), "batch_size": batch_size}
    label = f"{name} (process {state.process_index})"
    with bar(len(jobs), label, "img", disable=not state.is_local_main_process) as progress:
        return fill_cache(
            pipeline(),
            jobs,
            settings,
            batch_size,
            state.process_index,
            state.num_processes,
            progress=progress.update,
            switch=switch,
        )


def write_source(name: str, jobs: list[Job], settings: Settings, meta: dict, classes: list[str], report: dict) -> None:
    """data/synthetic/<name> (atomically), its sample grid and its metrics, from the cache."""
    out = paths.synthetic(name)
    with atomic_dir(out) as tmp:
        assemble(jobs, settings, tmp, meta)
    save_grid(sample_grid(out, classes), paths.samples(name))
    write_json(paths.metrics(f"generate/{name}"), report)
    print(
        f"{name}: {report['images']} images ({report['generated']} generated, {report['reused']} from the "
        f"cache) on {report['device']}"
    )


def finetuned_models(method: str, classes: list[str]) -> tuple[Path, dict[str, dict], dict[str, str]]:
    """models/<method>/<class> of every class: (the root, each class's trained.json, a fingerprint of
    each class's weights, which goes into its images' cache keys)."""
    root, trained = paths.finetuned(method), {}
    for c in classes:
        if not (root / c / "trained.json").exists():
            raise DiffaugError(f"{root / c} is missing; run `dvc repro train_{method}@{c}` first.")
        trained[c] = read_json(root / c / "trained.json")
    return root, trained, {c: sha256_tree(root / c)[:16] for c in classes}
