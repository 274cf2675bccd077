"""Stage `split`: data/raw -> data/original (d_original), data/test and data/pool (held-out extra real
images, the `real` sources'), decontaminated."""

import shutil
import sys
from pathlib import Path

from diffaug import paths
from diffaug.cli import run
from diffaug.data.split import draw_pool, split
from diffaug.io import atomic_dirs, read_csv, read_json, sha256_file, write_csv, write_json
from diffaug.params import load_params
from diffaug.paths import ORIGINAL, POOL, RAW, TEST


def write_split(out: Path, files: dict[str, list[str]], classes: list[str], report: dict) -> None:
    """Copy the chosen files; the manifest records each file's hash for the stages downstream."""
    rows = []
    for c in classes:
        (out / c).mkdir()
        for f in files[c]:
            shutil.copyfile(RAW / f, out / f)
            rows.append({"class": c, "file": f, "sha256": sha256_file(out / f)})
    write_csv(out / "manifest.csv", rows, ["class", "file", "sha256"])
    write_json(out / "classes.json", classes)
    write_json(out / "report.json", report)


def main() -> None:
    params = load_params()
    classes = read_json(RAW / "classes.json")
    rows = read_csv(RAW / "manifest.csv")
    original, test, report = split(RAW, rows, tuple(classes), params.split)
    pool, pool_report = draw_pool(RAW, rows, tuple(classes), params.split, original, test)
    with atomic_dirs(TEST, ORIGINAL, POOL) as (test_dir, original_dir, pool_dir):  # all replaced, or none
        write_split(test_dir, test, classes, report)
        write_split(original_dir, original, classes, report)
        write_split(pool_dir, pool, classes, pool_report)
    short = {c: n for c, n in pool_report["pool_per_class"].items() if n < params.split.pool_per_class}
    summary = {
        "original_images": sum(report["original_per_class"].values()),
        "test_images": sum(report["test_per_class"].values()),
        "near_duplicates_removed": report["near_duplicates_removed"],
        "pool_images": sum(pool_report["pool_per_class"].values()),
        "pool_per_class": pool_report["pool_per_class"],
        "pool_near_duplicates_removed": pool_report["pool_near_duplicates_removed"],
    }
    write_json(paths.metrics("split"), summary)
    print(
        f"split: {summary['original_images']} original, {summary['test_images']} test, "
        f"{summary['near_duplicates_removed']} near-duplicates of test images kept out of d_original, "
        f"{summary['pool_images']} in the pool"
    )
    if short:  # too few left: take what there is; `mix` says so if a mix asks for more
        print(
            f"split: fewer pool images than split.pool_per_class = {params.split.pool_per_class} in "
            + ", ".join(f"{c} ({n})" for c, n in short.items()),
            file=sys.stderr,
        )


if __name__ == "__main__":
    run(main)
