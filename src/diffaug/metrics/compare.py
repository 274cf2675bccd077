"""d_original against a synthetic source, per class and overall: features saved once, scores per source."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

from diffaug.errors import DiffaugError
from diffaug.io import atomic_dir, list_images, read_json, write_json
from diffaug.metrics.features import Extractor, extract
from diffaug.metrics.fid import fid, kid

OVERALL = "overall"


MIN_IMAGES = 2  # FID and KID need two images of a set


def class_features(
    extractor: Extractor, files: dict[str, list[Path]], batch_size: int, min_images: int = MIN_IMAGES
) -> dict[str, np.ndarray]:
    """(N, D) features per class; a class below `min_images` stops with a sentence (d_original's
    reference must be whole; a synthetic source passes 0 and gets (0, D) for an empty class)."""
    out = {}
    for c, paths in files.items():
        if len(paths) < min_images:
            raise DiffaugError(
                f"class '{c}' has {len(paths)} images, FID and KID need at least {min_images} per class; "
                "keep or generate more images of it."
            )
        print(f"features: {c} ({len(paths)} images)")
        out[c] = extract(extractor, paths, batch_size)
    width = max((f.shape[1] for f in out.values() if f.size), default=0)
    return {c: f if f.size else np.zeros((0, width), dtype=np.float32) for c, f in out.items()}


def folder_files(root: Path, classes: list[str]) -> dict[str, list[Path]]:
    """`<root>/<class>/*` images, as `mix` reads a synthetic source: whatever images are there."""
    return {c: list_images(root / c) if (root / c).is_dir() else [] for c in classes}


def save_features(folder: Path, features: dict[str, np.ndarray], meta: dict) -> None:
    with atomic_dir(folder) as out:
        save_file(
            {c: np.ascontiguousarray(f, dtype=np.float32) for c, f in features.items()},
            str(out / "features.safetensors"),
        )
        write_json(out / "meta.json", meta)


def load_features(folder: Path) -> tuple[dict[str, np.ndarray], dict]:
    if not (folder / "meta.json").is_file():
        raise DiffaugError(f"{folder} holds no reference features; run `dvc repro fid_reference`.")
    return load_file(str(folder / "features.safetensors")), read_json(folder / "meta.json")


def _seed(seed: int, name: str) -> list[int]:
    """KID's subsets per class from (seed, class name): adding a class does not change the others."""
    return [seed, int(hashlib.sha256(name.encode()).hexdigest()[:8], 16)]


def compare(
    original: dict[str, np.ndarray],
    synthetic: dict[str, np.ndarray],
    classes: list[str],
    kid_subsets: int,
    kid_subset_size: int,
    seed: int,
) -> dict:
    """FID, KID (mean, std) and image counts per class and over all classes pooled; a class with fewer
    than two synthetic images gets its counts and no score (`fid`, `kid` null)."""
    sets = {c: (original[c], synthetic[c]) for c in classes}
    sets[OVERALL] = (np.concatenate([original[c] for c in classes]), np.concatenate([synthetic[c] for c in classes]))
    scores = {}
    for name, (a, b) in sets.items():
        if len(b) < MIN_IMAGES:
            scores[name] = {"fid": None, "kid": None, "kid_std": None, "original": len(a), "synthetic": len(b)}
            continue
        kid_mean, kid_std = kid(a, b, kid_subsets, kid_subset_size, _seed(seed, name))
        scores[name] = {
            "fid": round(fid(a, b), 4),
            "kid": round(kid_mean, 6),
            "kid_std": round(kid_std, 6),
            "original": len(a),
            "synthetic": len(b),
        }
    return scores
