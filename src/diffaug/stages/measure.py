"""Stage `measure_<kind>@<source>`: how data/synthetic/<source> compares with d_original.

- metrics/recognise/<source>.json: how often the reference classifier (trained on d_original)
  assigns a synthetic image to the class it was made for, overall and per class (chance = 1/classes);
- metrics/fid/<source>.json: FID and KID between d_original's features (models/fid_reference) and
  the source's, per class and overall;
- metrics/copies/<source>.json: the share of its images that are near duplicates of a d_test or a
  d_original image (any class), by pHash and by the FID features (d_test's are computed here: it is small).
One process for all three: the networks are loaded once, and a source costs one process start.
"""

import sys
from pathlib import Path

import numpy as np

from diffaug import paths
from diffaug.classify.classifier import classify_folder
from diffaug.classify.evaluate import score
from diffaug.cli import run
from diffaug.device import pick_device
from diffaug.errors import DiffaugError
from diffaug.io import read_csv, write_json
from diffaug.metrics.compare import MIN_IMAGES, OVERALL, class_features, compare, folder_files, load_features
from diffaug.metrics.copies import copy_shares, phashes
from diffaug.metrics.features import extract, make_extractor
from diffaug.params import load_params
from diffaug.paths import FID_REFERENCE, ORIGINAL, REFERENCE, TEST
from diffaug.rules import more_of


def recognised(params, folder: Path, classes: list[str]) -> dict:
    device = pick_device(params.train.device)
    y_true, y_pred = classify_folder(REFERENCE, folder, classes, device, params.evaluate.batch_size)
    metrics, _, _ = score(y_true, y_pred, classes)
    return {
        "recognised": metrics["accuracy"],
        "images": metrics["test_images"],
        "per_class": metrics["per_class_accuracy"],
    }


def distances(params, folder: Path, source: str, original: dict, meta: dict) -> tuple[dict, dict, dict]:
    """(FID/KID report, the source's features per class, d_test's features in its manifest's order)."""
    f = params.fid
    extractor = make_extractor(f.features, REFERENCE, pick_device(f.device))
    if extractor.identity != meta["extractor_id"]:  # never compare features of two different networks
        raise DiffaugError(
            f"{FID_REFERENCE} was made with {meta['extractor_id']}, fid.features gives "
            f"{extractor.identity}; run `dvc repro fid_reference`."
        )
    classes = meta["classes"]
    synthetic = class_features(extractor, folder_files(folder, classes), f.batch_size, min_images=0)
    scores = compare(original, synthetic, classes, f.kid_subsets, f.kid_subset_size, f.seed)
    overall = scores.pop(OVERALL)
    report = {
        "source": source,
        "extractor": meta["extractor"],
        "extractor_id": meta["extractor_id"],
        **overall,
        "per_class": scores,
    }
    return report, synthetic, extract(extractor, test_files(), f.batch_size)


def test_files() -> list[Path]:
    if not (TEST / "manifest.csv").is_file():
        raise DiffaugError(f"{TEST} does not exist; produce it with `dvc repro split`.")
    return [TEST / r["file"] for r in read_csv(TEST / "manifest.csv")]


def copies(params, folder: Path, classes: list[str], synthetic: dict, original: dict, test_features) -> dict:
    """metrics/copies/<source>.json: near duplicates of d_test and of d_original, pHash and features."""
    c = params.copies
    files = folder_files(folder, classes)  # the order class_features read them in: rows match
    rows = read_csv(ORIGINAL / "manifest.csv")
    original_files = [ORIGINAL / r["file"] for k in classes for r in rows if r["class"] == k]  # fid_reference's order
    original_features = np.concatenate([original[k] for k in classes])
    if len(original_features) != len(original_files):
        raise DiffaugError(
            f"{FID_REFERENCE} holds {len(original_features)} images' features, {ORIGINAL} has "
            f"{len(original_files)}; run `dvc repro fid_reference`."
        )
    references = {
        "test": (phashes(test_files()), test_features),
        "original": (phashes(original_files), original_features),
    }
    shares = copy_shares(
        {k: phashes(fs) for k, fs in files.items()}, synthetic, references, c.phash_distance, c.feature_distance
    )
    return {
        **shares,
        "phash_distance": c.phash_distance,
        "feature_distance": c.feature_distance,
        "flag_share": c.flag_share,
        "extractor": params.fid.features,
    }


def main() -> None:
    source = sys.argv[1]
    params = load_params()
    folder = paths.synthetic(source)
    if not (folder / "manifest.csv").is_file():
        stage = params.sources.stage(source) if source in params.sources.names() else "the stage that writes it"
        raise DiffaugError(f"{folder} does not exist; produce it with `dvc repro {stage}`.")
    original, meta = load_features(FID_REFERENCE)  # d_original's features and classes, from fid_reference
    files = folder_files(folder, meta["classes"])
    if sum(len(fs) for fs in files.values()) < MIN_IMAGES:  # nothing to measure at all
        raise DiffaugError(f"{folder} has fewer than {MIN_IMAGES} images; {more_of(params, source)}.")
    few = {c: len(fs) for c, fs in files.items() if len(fs) < MIN_IMAGES}
    recognise = recognised(params, folder, meta["classes"])
    write_json(paths.metrics(f"recognise/{source}"), recognise)
    fid, synthetic, test_features = distances(params, folder, source, original, meta)
    if few:  # measured without them; a mix that needs their images stops in `mix`
        fid["too_few"] = few
        print(
            f"WARNING: {source} has fewer than {MIN_IMAGES} images of class "
            f"{', '.join(f'{c} ({n})' for c, n in few.items())}: no FID or KID for them, and a mix of this "
            f"source at p > 0 will stop; {more_of(params, source)}.",
            file=sys.stderr,
        )
    write_json(paths.metrics(f"fid/{source}"), fid)
    leaks = copies(params, folder, meta["classes"], synthetic, original, test_features)
    write_json(paths.metrics(f"copies/{source}"), leaks)
    print(
        f"measure {source}: {recognise['recognised']:.1%} of {recognise['images']} images recognised as their "
        f"class; FID {fid['fid']:.2f}, KID {fid['kid']:.4f} ± {fid['kid_std']:.4f} ({fid['extractor']} features); "
        f"near duplicates: {leaks['test']['share']:.1%} of d_test, {leaks['original']['share']:.1%} of d_original"
    )


if __name__ == "__main__":
    run(main)
