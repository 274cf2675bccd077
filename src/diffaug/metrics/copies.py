"""Copies and leaks: synthetic images that are near duplicates of a reference image (d_test, d_original).

A fine-tuned model can redraw its instance images and a web-trained one a web-scraped test image. Two
tests, and an image counts as a copy if either says so:
- perceptual hash: Hamming distance of `diffaug.data.images.phash` at most `phash_distance` (cheap, no
  network: `mix` uses it alone to keep test copies out of training);
- features: cosine distance between feature vectors (FID's extractor) at most `feature_distance`.
A leak does not respect labels: each synthetic image is compared with the reference images of every
class, and the shares are reported per synthetic class. Features come in as arrays: no torch here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image

from diffaug.data.images import hamming_matrix, phash

CHUNK = 1024  # rows of a distance matrix at a time: 7,000 x 7,000 int64 would be 400 MB at once


def phashes(files: list[Path | str]) -> np.ndarray:
    out = np.zeros(len(files), dtype=np.uint64)
    for i, f in enumerate(files):
        with Image.open(f) as im:
            out[i] = phash(im)
    return out


def _nearest(a: np.ndarray, b: np.ndarray, distance, empty: float) -> np.ndarray:
    """For each row of `a`, its smallest `distance` to any row of `b` (`empty` when `b` has none)."""
    if len(b) == 0:
        return np.full(len(a), empty, dtype=np.float64)
    parts = [distance(a[i : i + CHUNK], b).min(axis=1) for i in range(0, len(a), CHUNK)]
    return np.concatenate(parts).astype(np.float64) if parts else np.zeros(0)


def nearest_hamming(hashes: np.ndarray, reference: np.ndarray) -> np.ndarray:
    return _nearest(hashes, reference, hamming_matrix, 65.0)  # 65: farther than any two 64-bit hashes


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def nearest_cosine(features: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Smallest cosine distance (1 - cosine similarity, 0 to 2) of each feature vector to the reference's."""
    ref = _unit(reference)
    return _nearest(_unit(features), ref, lambda a, b: 1.0 - a @ b.T, 3.0)


def near_copies(synthetic: dict[str, list[str]], reference: list[str], phash_distance: int) -> dict[str, list[str]]:
    """Per class, the synthetic files whose pHash is within `phash_distance` bits of any reference file (sorted)."""
    ref = phashes(reference)
    out = {}
    for c, files in synthetic.items():
        near = nearest_hamming(phashes(files), ref) <= phash_distance
        out[c] = sorted(f for f, hit in zip(files, near) if hit)
    return out


def _shares(flags: dict[str, np.ndarray], n: int) -> dict:
    hits = flags["phash"] | flags["feature"]

    def share(k) -> float:
        return round(float(k) / n, 6) if n else 0.0

    return {
        "share": share(hits.sum()),
        "phash": share(flags["phash"].sum()),
        "feature": share(flags["feature"].sum()),
        "images": n,
        "copies": int(hits.sum()),
    }


def copy_shares(
    hashes: dict[str, np.ndarray],
    features: Optional[dict[str, np.ndarray]],
    references: dict[str, tuple[np.ndarray, Optional[np.ndarray]]],
    phash_distance: int,
    feature_distance: float,
) -> dict:
    """Near-duplicate shares of a synthetic set against each reference set.

    `hashes`/`features`: per synthetic class, its images' pHashes and feature vectors (rows in the same
    order); `references`: name (test, original) -> (pHashes, feature vectors) of all its classes pooled.
    Returns {name: {share, phash, feature, images, copies}, per_class: {class: {name: share}}};
    without features (None) only the pHash test counts."""
    classes = list(hashes)
    out, per_class = {}, {c: {} for c in classes}
    for name, (ref_hashes, ref_features) in references.items():
        flags = {}
        for c in classes:
            by_hash = nearest_hamming(hashes[c], ref_hashes) <= phash_distance
            by_feature = np.zeros_like(by_hash)
            if features is not None and ref_features is not None:
                by_feature = nearest_cosine(features[c], ref_features) <= feature_distance
            flags[c] = {"phash": by_hash, "feature": by_feature}
            per_class[c][name] = _shares(flags[c], len(by_hash))["share"]
        pooled = {
            k: np.concatenate([flags[c][k] for c in classes]) if classes else np.zeros(0, bool)
            for k in ("phash", "feature")
        }
        out[name] = _shares(pooled, len(pooled["phash"]))
    return {**out, "per_class": per_class}
