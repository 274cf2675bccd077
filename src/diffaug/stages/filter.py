"""Stage `filter@<source>`, for the sources of params.yaml's `sources.filtered`: the images of the
entry's `of` source (data/synthetic/<of>) that pass its filter -> data/synthetic/<source>, a source
like any other, and metrics/filter/<source>.json (per class: candidates, kept, dropped, threshold).

`confidence` scores with models/reference (offline). `clip` needs `clip.model`; while it is null the
stage writes an empty source and a note instead (`mix` then says the source has no images).
"""

import shutil
import sys
from collections import Counter
from pathlib import Path

import numpy as np

from diffaug import paths
from diffaug.cli import run
from diffaug.data.filter import class_counts, keep_mask, own_class
from diffaug.device import Meter, pick_device
from diffaug.errors import DiffaugError
from diffaug.io import atomic_dir, read_csv, read_json, write_csv, write_json
from diffaug.params import load_params
from diffaug.paths import ORIGINAL, REFERENCE
from diffaug.plots import sample_grid, save_grid
from diffaug.rules import needed


def probabilities(params, entry, folder: Path, rows: list[dict], classes: list[str]) -> np.ndarray:
    device = pick_device(params.filter.device)
    if entry.filter == "confidence":
        from diffaug.classify.classifier import manifest_probabilities

        return manifest_probabilities(REFERENCE, rows, classes, device, params.filter.batch_size, folder)[1]
    from diffaug.classify.clip import clip_probabilities, load_clip

    model, processor = load_clip(params.clip.model, params.clip.revision)
    return clip_probabilities(
        model,
        processor,
        [folder / r["file"] for r in rows],
        classes,
        params.clip.template,
        params.filter.batch_size,
        device,
    )


def shortfalls(params, name: str, kept: dict[str, int]) -> list[str]:
    """Classes with fewer kept images than the mixes of these params ask for, in words."""
    sizes = Counter(r["class"] for r in read_csv(ORIGINAL / "manifest.csv"))
    largest = max(sizes.values())
    need = {c: needed(params, name, n, largest) for c, n in sizes.items()}
    return [
        f"{c}: {need[c] - kept[c]} missing ({kept[c]} kept, {need[c]} needed)"
        for c in sizes
        if kept.get(c, 0) < need[c]
    ]


def warn_short(params, name: str, per_class: dict) -> None:
    """A warning when the filter kept fewer images of a class than the mixes of params.yaml need."""
    short = shortfalls(params, name, {c: v["kept"] for c, v in per_class.items()})
    if short:
        print(
            f"WARNING: filter {name} kept fewer images than the mixes of params.yaml need ({'; '.join(short)}); "
            f"raise sources.filtered.{name}.candidates or lower the filter's threshold.",
            file=sys.stderr,
        )


def write_kept(out: Path, folder: Path, kept_rows: list[dict], columns: list[str]) -> None:
    """The kept images (copies, by class folder) and their manifest with each one's score, atomically."""
    with atomic_dir(out) as tmp:
        for r in kept_rows:
            (tmp / r["class"]).mkdir(exist_ok=True)
            shutil.copyfile(folder / r["file"], tmp / r["file"])
        write_csv(tmp / "manifest.csv", kept_rows, columns)


def skip(name: str, entry, rows: list[dict], classes: list[str]) -> None:
    """The clip filter without CLIP weights: an empty set and a metrics file that says why."""
    note = "skipped: the clip filter needs CLIP weights; set clip.model (a hub id or folder) to run it"
    out = paths.synthetic(name)
    with atomic_dir(out) as tmp:
        write_csv(tmp / "manifest.csv", [], list(rows[0]) if rows else ["class", "file"])
    save_grid(sample_grid(out, classes), paths.samples(name))
    write_json(paths.metrics(f"filter/{name}"), {"of": entry.of, "filter": entry.filter, "skipped": note})
    print(f"filter {name}: {note}")


def main() -> None:
    name = sys.argv[1]
    params = load_params()
    entry = params.sources.entry("filtered", name)
    folder, out, grid = paths.synthetic(entry.of), paths.synthetic(name), paths.samples(name)
    if not (folder / "manifest.csv").is_file():
        raise DiffaugError(f"{folder} does not exist; produce it with `dvc repro {params.sources.stage(entry.of)}`.")
    rows = read_csv(folder / "manifest.csv")
    classes = read_json(ORIGINAL / "classes.json")
    if entry.filter == "clip" and params.clip.model is None:
        return skip(name, entry, rows, classes)
    threshold = (
        params.filter.threshold if entry.filter == "confidence" else params.filter.clip_threshold or 1.0 / len(classes)
    )
    drop_top = params.filter.drop_top if entry.filter == "confidence" else 0.0
    labels = np.array([classes.index(r["class"]) for r in rows], dtype=np.int64)
    meter = Meter(pick_device(params.filter.device))
    scores = own_class(probabilities(params, entry, folder, rows, classes), labels)
    keep = keep_mask(scores, labels, threshold, drop_top)
    kept_rows = [dict(r, score=round(float(s), 6)) for r, s, k in zip(rows, scores, keep) if k]
    write_kept(out, folder, kept_rows, [*rows[0], "score"] if rows else ["class", "file", "score"])
    save_grid(sample_grid(out, classes), grid)
    per_class = class_counts(keep, labels, classes, threshold)
    kept = {"kept": int(keep.sum()), "dropped": int((~keep).sum()), "per_class": per_class}
    write_json(
        paths.metrics(f"filter/{name}"),
        {
            "of": entry.of,
            "filter": entry.filter,
            "threshold": round(float(threshold), 6),
            "drop_top": drop_top,
            "candidates": len(rows),
            **kept,
            **meter.reading(len(rows), "images"),
        },
    )
    print(f"filter {name}: kept {int(keep.sum())} of {len(rows)} {entry.of} images ({entry.filter} >= {threshold:g})")
    warn_short(params, name, per_class)


if __name__ == "__main__":
    run(main)
