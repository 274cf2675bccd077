"""Mixing: d_total = p * d_synthetic + (1 - p) * d_original, per class, without replacement.

For a fixed per-class total n, exactly round(p*n) synthetic and n - round(p*n) real images
(rounding half up). `source: none` keeps only the real part: the paper's "only original" baseline.
`mode: add` keeps all n real images and puts round(p*n) synthetic ones on top; `mode: balance` keeps
all real images and tops every class up with synthetic ones to the same n (class-imbalance filling).
Validation images come from the real images only (`val_from: original`), so model selection is
judged on real data; `val_from: mixed` reproduces the paper's code, which split the mixed set.
An img2img image whose parent (its manifest's `parent`) went to validation is never trained on:
it is its parent redrawn, and would leak the validation image into training.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from diffaug.errors import DiffaugError
from diffaug.io import list_images, read_csv
from diffaug.params import Mix
from diffaug.rng import class_rng
from diffaug.rules import mix_counts, round_half_up

MIXED_COLUMNS = ["class", "file", "origin", "sha256"]


def synthetic_files(root: Path, source: str, classes: list[str], stage: str) -> dict[str, list[str]]:
    """`data/synthetic/<source>/<class>/*`: whatever images are there, however they were made
    (`stage` is the DVC stage that writes them, for the error)."""
    folder = root / source
    if not folder.is_dir():
        raise DiffaugError(
            f"mix.source={source} but {folder} does not exist; produce it with `dvc repro {stage}`, "
            f"or put images in {folder}/<class>/."
        )
    return {c: [str(p) for p in list_images(folder / c)] if (folder / c).is_dir() else [] for c in classes}


def parents_of(root: Path, source: str, original: Path) -> dict[str, str]:
    """Synthetic file -> the d_original file it was drawn from (img2img sources; {} for the others)."""
    manifest = root / source / "manifest.csv"
    rows = read_csv(manifest) if manifest.is_file() else []
    return {str(root / source / r["file"]): str(original / r["parent"]) for r in rows if r.get("parent")}


def _take(rng, files: list[str], k: int) -> list[str]:
    return [files[i] for i in rng.permutation(len(files))[:k]]


def _check_enough(name: str, synthetic: list[str], n_syn: int, n: int, params: Mix, img2img: bool, hint: str) -> None:
    """Stop with one sentence when the source has fewer usable images of the class than the mix needs."""
    if n_syn > len(synthetic):
        usable = " usable (children of validation images left out)" if img2img else ""
        asked = "mix.mode=balance" if params.mode == "balance" else f"mix.p={params.p}"
        raise DiffaugError(
            f"class '{name}' has {len(synthetic)}{usable} {params.source} images but the mix needs {n_syn} "
            f"({asked}, n={n}), {n_syn - len(synthetic)} missing; {hint} or lower mix.p or mix.n_per_class."
        )


def mix_class(
    name: str,
    real: list[str],
    synthetic: list[str],
    params: Mix,
    parents: Optional[dict[str, str]] = None,
    n_largest: Optional[int] = None,
    hint: str = "generate more",
) -> tuple[list, list]:
    """Return ([(file, origin)] for training, [(file, origin)] for validation) for one class.

    `parents`: synthetic file -> its real parent (img2img); `n_largest`: the largest class's real images
    (mode balance); `hint`: how to get more images of the source, for the error."""
    rng = class_rng(params.seed, name)
    real = _take(rng, sorted(real), len(real))  # a seeded shuffle
    counts = mix_counts(len(real), params, n_largest=n_largest)
    n_val, n, n_syn, n_real = counts["val"], counts["n"], counts["synthetic"], counts["real"]
    val, real = [(f, "original") for f in real[:n_val]], real[n_val:]
    if n_real > len(real):
        raise DiffaugError(
            f"class '{name}' has {len(real)} real training images but the mix needs {n_real} "
            f"(mix.n_per_class={n}, p={params.p}); lower mix.n_per_class or raise split.original_per_class."
        )
    if parents and params.val_from == "original":
        held_out = {f for f, _ in val}
        synthetic = [f for f in synthetic if parents.get(f) not in held_out]
    n_syn = 0 if params.source == "none" else n_syn
    _check_enough(name, synthetic, n_syn, n, params, bool(parents), hint)
    train = [(f, "original") for f in real[:n_real]] + [(f, "synthetic") for f in _take(rng, sorted(synthetic), n_syn)]
    if params.val_from == "mixed":
        train = [train[i] for i in rng.permutation(len(train))]
        n_val = round_half_up(params.val_fraction * len(train))
        val, train = train[:n_val], train[n_val:]
    if not train:
        raise DiffaugError(f"class '{name}' has no training images after mixing; check mix.* and split.*.")
    return sorted(train), sorted(val)
