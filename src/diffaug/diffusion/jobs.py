"""Image jobs, the engine under every synthetic source: seeded per image, batched, cached, resumable, split
across processes. `fill_cache` draws the jobs the cache lacks; `assemble` copies them into a set with its manifest.

Image i of class c gets seed hash(seed, c, i) and prompt prompts[c][i % len(prompts[c])], so any
image can be regenerated alone and the set is identical on rerun. Batches are fixed slices of each
class's jobs (not of what is left to do), so a resumed or multi-GPU run computes every image in the
same batch as an uninterrupted single-process run, and a fine-tuned source can switch to the class's
weights between batches. Each finished image goes into a cache
outside the DVC output, keyed by everything that determines it: a crash after 6,000 of 7,000
images costs 1,000 images on the rerun, not 7,000.

The pipeline hands back uint8 tensors; resizing, PNG encoding and writing run in a small thread
pool while the next batch denoises (Pillow releases the GIL while it encodes), so the GPU does not
wait for the CPU between batches.
"""

from __future__ import annotations

import errno
import gc
import hashlib
import json
import os
import sys
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from PIL import Image

from diffaug.data.images import png_bytes
from diffaug.errors import DiffaugError
from diffaug.io import atomic_write_bytes, cache_dir, clean_leftovers, write_csv

# Threads that encode and write PNGs; more than a few only compete with the pipeline for the CPU.
WRITERS = min(4, os.cpu_count() or 1)
MANIFEST_COLUMNS = ["class", "file", "prompt", "seed", "model", "revision", "scheduler", "steps", "guidance"]
LINEAGE_COLUMNS = ["parent", "parent_sha256", "strength"]  # img2img: the d_original image it started from


@dataclass(frozen=True)
class Job:
    label: str
    index: int
    prompt: str
    seed: int
    weights: str = ""  # a fingerprint of per-class fine-tuned weights (DreamBooth, Textual Inversion)
    parent: str = ""  # img2img: the real image it starts from (relative to data/original), and its hash
    parent_sha256: str = ""
    strength: Optional[float] = None  # img2img: how far the parent is noised (0: kept, 1: drawn anew)

    @property
    def file(self) -> str:
        return f"{self.label}/{self.index:05d}.png"


@dataclass(frozen=True)
class Settings:
    """Everything besides the job that determines the pixels of an image."""

    model: str  # a fingerprint of the weights (hub commit or file hash)
    scheduler: str
    steps: int
    guidance: float
    negative_prompt: str
    height: Optional[int]
    width: Optional[int]
    save_size: Optional[int]
    dtype: str


def image_seed(seed: int, label: str, index: int) -> int:
    return int(hashlib.sha256(f"{seed}/{label}/{index}".encode()).hexdigest()[:8], 16)


def plan(
    prompts: dict[str, list[str]], per_class: int, seed: int, weights: Optional[dict[str, str]] = None
) -> list[Job]:
    weights = weights or {}
    return [
        Job(c, i, ps[i % len(ps)], image_seed(seed, c, i), weights.get(c, ""))
        for c, ps in prompts.items()
        for i in range(per_class)
    ]


def class_batches(jobs: list[Job], batch_size: int) -> list[list[Job]]:
    """Fixed slices of each class's jobs (of each strength: one pipeline call has one strength)."""
    by_class: dict[tuple, list[Job]] = {}
    for j in jobs:
        by_class.setdefault((j.label, j.strength), []).append(j)
    return [js[i : i + batch_size] for js in by_class.values() for i in range(0, len(js), batch_size)]


def cache_key(job: Job, settings: Settings) -> str:
    identity = [job.prompt, job.seed] + ([job.weights] if job.weights else [])
    if job.parent_sha256:  # the pixels of the parent, not its name, decide the image
        identity += [job.parent_sha256, job.strength]
    payload = json.dumps({"job": identity, "settings": asdict(settings)}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def cached_path(key: str, root: Optional[Path] = None) -> Path:
    root = root or cache_dir("images")
    return root / key[:2] / f"{key}.png"


def to_png(image: Image.Image | np.ndarray, save_size: Optional[int]) -> bytes:
    """PNG bytes of a PIL image or an HWC uint8 array, resized to `save_size` if given."""
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    if save_size and image.size != (save_size, save_size):
        image = image.resize((save_size, save_size), Image.Resampling.LANCZOS)
    return png_bytes(image.convert("RGB"))


def to_uint8(images: torch.Tensor) -> list[np.ndarray]:
    """(N,3,H,W) floats in [0, 1], as the pipeline returns them, to HWC uint8 arrays with exactly
    diffusers' PIL conversion (float32, x255, round half to even), computed on the device, so only a
    quarter of the float32 bytes cross to the host."""
    out = (images.float() * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    return list(out)


def run_batch(pipe, jobs: list[Job], settings: Settings) -> list[np.ndarray]:
    """One pipeline call: classifier-free guidance runs as one batched UNet call per step
    (diffusers concatenates the unconditional and conditional halves). Jobs with a parent go
    through an img2img pipeline (`pipe.start_images` loads their parents). Images come back as HWC
    uint8 arrays."""
    # One generator per image: its starting noise does not depend on the rest of the batch.
    generators = [torch.Generator(device="cpu").manual_seed(j.seed) for j in jobs]
    size = {"height": settings.height, "width": settings.width}
    if jobs[0].parent:
        size = {"image": pipe.start_images(jobs), "strength": jobs[0].strength}
    out = pipe(
        prompt=[j.prompt for j in jobs],
        negative_prompt=[settings.negative_prompt] * len(jobs) if settings.negative_prompt else None,
        num_inference_steps=settings.steps,
        guidance_scale=settings.guidance,
        generator=generators,
        output_type="pt",
        **size,
    )
    return to_uint8(out.images)


def run_fitting(pipe, jobs: list[Job], settings: Settings, limit: list[int]) -> list[np.ndarray]:
    """`run_batch` in slices of at most `limit[0]` images; on CUDA out-of-memory the limit halves
    (for the rest of the run: `limit` is shared) and the slice is retried. Seeds are per image, so
    the images do not depend on the slicing (up to the GPU's rounding, which varies with batch shape)."""
    images: list[np.ndarray] = []
    while len(images) < len(jobs):
        size = limit[0]
        try:
            images += run_batch(pipe, jobs[len(images) : len(images) + size], settings)
            continue
        except torch.OutOfMemoryError:
            if size == 1:
                raise DiffaugError(
                    f"generation ran out of GPU memory even one image at a time at {settings.height or 'native'} px; "
                    "set generate.cpu_offload: true, a smaller generate.resolution, or free the GPU."
                ) from None
        # Outside the except block: the traceback no longer pins the failed call's tensors.
        limit[0] = max(1, size // 2)
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        print(f"generate: out of GPU memory at batch {size}, continuing at {limit[0]}", file=sys.stderr)
    return images


def write_png(path: Path, image: np.ndarray, save_size: Optional[int]) -> None:
    try:
        atomic_write_bytes(path, to_png(image, save_size))
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise DiffaugError(
            f"no space left on the disk of the image cache {path.parent.parent} while writing generated images; "
            "free space there or set DIFFAUG_CACHE to a folder on a bigger disk."
        ) from None


class Writer:
    """Writes one batch's images in a thread pool while the caller draws the next. Submitting a
    batch first waits for the previous one, so at most two batches are in flight (one being written,
    one being drawn): memory stays bounded however fast the pipeline is. A write's error is raised
    in the caller, at the next submit or at the end."""

    def __init__(self, workers: int = WRITERS):
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="png")
        self.pending: list[Future] = []

    def submit(self, fn, items: list[tuple]) -> None:
        self.wait()
        self.pending = [self.pool.submit(fn, *item) for item in items]

    def wait(self) -> None:
        pending, self.pending = self.pending, []
        for future in pending:
            future.result()

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, *exc) -> None:
        try:
            if exc[0] is None:
                self.wait()
        finally:
            # After an error too, the images already drawn reach the cache (each write is atomic).
            self.pool.shutdown(wait=True)


def fill_cache(
    pipe,
    jobs: list[Job],
    settings: Settings,
    batch_size: int,
    process_index: int = 0,
    num_processes: int = 1,
    cache: Optional[Path] = None,
    progress: Callable[[int], None] = lambda n: None,
    switch: Optional[Callable[[object, str], None]] = None,
) -> dict:
    """Make sure every job of this process's batches is in the cache; return counts and the batch
    size that fitted in memory.

    `switch(pipe, label)` puts a class's own weights into the pipeline before its first batch.
    """
    clean_leftovers(cache or cache_dir("images"), "*/.*.tmp-*")  # what killed runs left in the cache
    made = reused = 0
    current = None
    limit = [batch_size]  # lowered for good by an out-of-memory error
    with Writer() as writer:
        for b, batch in enumerate(class_batches(jobs, batch_size)):
            if b % num_processes != process_index:
                continue
            paths = [cached_path(cache_key(j, settings), cache) for j in batch]
            if all(p.exists() for p in paths):
                reused += len(batch)
                progress(len(batch))
                continue
            if switch and batch[0].label != current:
                switch(pipe, batch[0].label)
                current = batch[0].label
            images = run_fitting(pipe, batch, settings, limit)
            writer.submit(write_png, [(path, image, settings.save_size) for path, image in zip(paths, images)])
            made += len(batch)
            progress(len(batch))
    return {"generated": made, "reused": reused, "batch_size": limit[0]}


def assemble(jobs: list[Job], settings: Settings, out: Path, meta: dict, cache: Optional[Path] = None) -> list[dict]:
    """Copy the cached images into `out/<class>/<index>.png` and return the manifest rows."""
    for label in {job.label for job in jobs}:
        (out / label).mkdir(parents=True, exist_ok=True)

    def copy(job: Job) -> None:
        (out / job.file).write_bytes(cached_path(cache_key(job, settings), cache).read_bytes())

    with ThreadPoolExecutor(max_workers=WRITERS) as pool:  # file copies: I/O, not the GIL, is the limit
        list(pool.map(copy, jobs))  # list(): raises the first copy's error
    rows = []
    lineage = any(j.parent for j in jobs)
    for job in jobs:
        rows.append(
            {
                "class": job.label,
                "file": job.file,
                "prompt": job.prompt,
                "seed": job.seed,
                "scheduler": settings.scheduler,
                "steps": settings.steps,
                "guidance": settings.guidance,
                **meta,
            }
        )
        if lineage:
            rows[-1].update(parent=job.parent, parent_sha256=job.parent_sha256, strength=job.strength)
    write_csv(out / "manifest.csv", rows, MANIFEST_COLUMNS + (LINEAGE_COLUMNS if lineage else []))
    return rows
