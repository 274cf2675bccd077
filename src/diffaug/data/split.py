"""Splitting `d_raw` into `d_original` (training pool) and a held-out test set, per class.

The test images are drawn first; `d_original` is then filled from the rest, skipping any image
whose perceptual hash is within `dedupe_distance` bits of a test image (of any class): web-scraped
data is full of re-uploads and crops, and one of them on both sides inflates test accuracy.
`imbalance` makes d_original long-tailed (the test set stays balanced): class c keeps
original_per_class * imbalance^(c/(C-1)) images, a prefix of what the balanced split keeps.
`draw_pool` draws a held-out pool of extra real images (the ALIA baseline) strictly after, from the
leftovers, with its own seeded stream: d_original and d_test do not depend on `pool_per_class`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from diffaug.data.images import hamming_matrix, phash
from diffaug.errors import DiffaugError
from diffaug.params import Split
from diffaug.rng import class_rng
from diffaug.rules import imbalance_sizes


def _hashes(raw: Path, files: list[str]) -> np.ndarray:
    out = np.zeros(len(files), dtype=np.uint64)
    for i, f in enumerate(files):
        with Image.open(raw / f) as im:
            out[i] = phash(im)
    return out


def split(raw: Path, rows: list[dict], classes: tuple[str, ...], params: Split) -> tuple[dict, dict, dict]:
    """Return ({class: [file]} for d_original, the same for test, a report)."""
    by_class = {c: sorted(r["file"] for r in rows if r["class"] == c) for c in classes}
    for c, files in by_class.items():
        if len(files) <= params.test_per_class:
            raise DiffaugError(
                f"class '{c}' has {len(files)} images, not enough for split.test_per_class="
                f"{params.test_per_class} plus training images; lower it or add images."
            )
    order = {c: [files[i] for i in class_rng(params.seed, c).permutation(len(files))] for c, files in by_class.items()}
    test = {c: sorted(order[c][: params.test_per_class]) for c in classes}
    pool = {c: order[c][params.test_per_class :] for c in classes}

    test_hashes = _hashes(raw, [f for c in classes for f in test[c]])
    original, removed = {}, {}
    sizes = (
        dict(zip(classes, imbalance_sizes(params, params.original_per_class, len(classes))))
        if params.original_per_class
        else {}
    )
    for c in classes:
        near = hamming_matrix(_hashes(raw, pool[c]), test_hashes).min(axis=1) <= params.dedupe_distance
        clean = [f for f, dup in zip(pool[c], near) if not dup]
        removed[c] = int(near.sum())
        want = sizes.get(c) or len(clean)
        if len(clean) < want:
            raise DiffaugError(
                f"class '{c}' has only {len(clean)} images left for d_original after the test split and "
                f"removing {removed[c]} near-duplicates of test images (split.original_per_class={want}); "
                "lower split.original_per_class or add images."
            )
        original[c] = sorted(clean[:want])
    report = {
        "original_per_class": {c: len(original[c]) for c in classes},
        "test_per_class": {c: len(test[c]) for c in classes},
        "near_duplicates_removed": sum(removed.values()),
        "near_duplicates_removed_per_class": removed,
    }
    return original, test, report


def draw_pool(
    raw: Path, rows: list[dict], classes: tuple[str, ...], params: Split, original: dict, test: dict
) -> tuple[dict, dict]:
    """Return ({class: [file]} for the held-out pool, a report): up to `pool_per_class` images per class of
    those neither d_original nor d_test took, none within `dedupe_distance` of an image of either."""
    if not params.pool_per_class:
        return {c: [] for c in classes}, {"pool_per_class": {c: 0 for c in classes}, "pool_near_duplicates_removed": 0}
    used = {f for side in (original, test) for c in classes for f in side[c]}
    kept_hashes = _hashes(raw, sorted(used))
    chosen, removed = {}, {}
    for c in classes:
        left = sorted(r["file"] for r in rows if r["class"] == c and r["file"] not in used)
        # its own stream ("/" is in no class name, so no class's own stream is this one)
        left = [left[i] for i in class_rng(params.seed, c + "/pool").permutation(len(left))]
        near = (
            hamming_matrix(_hashes(raw, left), kept_hashes).min(axis=1) <= params.dedupe_distance
            if left
            else np.zeros(0, dtype=bool)
        )
        clean = [f for f, dup in zip(left, near) if not dup]
        removed[c] = int(near.sum())
        chosen[c] = sorted(clean[: params.pool_per_class])
    return chosen, {
        "pool_per_class": {c: len(chosen[c]) for c in classes},
        "pool_near_duplicates_removed": sum(removed.values()),
    }
