"""Stage `split`: data/raw -> data/original (d_original) and data/test, decontaminated."""
import shutil
from pathlib import Path

from diffaug.cli import run
from diffaug.config import load_params
from diffaug.data.split import split
from diffaug.io import atomic_dirs, read_csv, read_json, sha256_file, write_csv, write_json

RAW, ORIGINAL, TEST = Path("data/raw"), Path("data/original"), Path("data/test")


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
    original, test, report = split(RAW, read_csv(RAW / "manifest.csv"), tuple(classes), params.split)
    with atomic_dirs(TEST, ORIGINAL) as (test_dir, original_dir):  # both replaced, or neither
        write_split(test_dir, test, classes, report)
        write_split(original_dir, original, classes, report)
    summary = {"original_images": sum(report["original_per_class"].values()),
               "test_images": sum(report["test_per_class"].values()),
               "near_duplicates_removed": report["near_duplicates_removed"]}
    write_json("metrics/split.json", summary)
    print(f"split: {summary['original_images']} original, {summary['test_images']} test, "
          f"{summary['near_duplicates_removed']} near-duplicates of test images kept out of d_original")


if __name__ == "__main__":
    run(main)
