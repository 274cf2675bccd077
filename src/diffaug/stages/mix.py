"""Stage `mix`: data/original + data/synthetic/<mix.source> -> data/mixed (manifests, not copies)."""

from diffaug import paths
from diffaug.cli import run
from diffaug.data.mix import MIXED_COLUMNS, mix_class, parents_of, synthetic_files
from diffaug.errors import DiffaugError
from diffaug.io import atomic_dir, read_csv, read_json, sha256_file, write_csv, write_json
from diffaug.metrics.copies import near_copies
from diffaug.params import load_params
from diffaug.paths import MIXED, ORIGINAL, SYNTHETIC, TEST
from diffaug.rules import more_of


def leaked_copies(params, synthetic: dict[str, list[str]]) -> dict[str, list[str]]:
    """Per class, the synthetic files within `copies.phash_distance` of a d_test image (any class): a leak."""
    if not params.mix.exclude_test_copies or not synthetic:
        return {c: [] for c in synthetic}
    if not (TEST / "manifest.csv").is_file():
        raise DiffaugError(
            f"{TEST} does not exist; produce it with `dvc repro split` "
            "(mix.exclude_test_copies compares the synthetic images with it)."
        )
    test = [str(TEST / r["file"]) for r in read_csv(TEST / "manifest.csv")]
    return near_copies(synthetic, test, params.copies.phash_distance)


def inputs(all_params, classes: list[str]):
    """d_original per class with each file's hash, and the source's synthetic files per class (near copies of
    d_test left out), their img2img parents and the left-out copies."""
    params = all_params.mix
    original = read_csv(ORIGINAL / "manifest.csv")
    real_hash = {str(ORIGINAL / r["file"]): r["sha256"] for r in original}
    real = {c: [str(ORIGINAL / r["file"]) for r in original if r["class"] == c] for c in classes}
    synthetic = (
        {}
        if params.source == "none"
        else synthetic_files(SYNTHETIC, params.source, classes, all_params.sources.stage(params.source))
    )
    parents = {} if params.source == "none" else parents_of(SYNTHETIC, params.source, ORIGINAL)
    # Left out before the seeded draw: with nothing to leave out, the mix is the same bytes as without the check.
    excluded = leaked_copies(all_params, synthetic)
    drop = {c: set(files) for c, files in excluded.items()}
    synthetic = {c: [f for f in files if f not in drop[c]] for c, files in synthetic.items()}
    return real, real_hash, synthetic, parents, excluded


def mix_rows(all_params, classes: list[str], real_hash, real, synthetic, parents, excluded):
    """The training and validation manifests' rows, and per class what went in."""
    params = all_params.mix
    largest = max(len(files) for files in real.values())
    hint = more_of(all_params, params.source)

    # The manifests carry each file's hash, so `train` reruns if any image it uses changes.
    def rows(pairs, c):
        return [{"class": c, "file": f, "origin": o, "sha256": real_hash.get(f) or sha256_file(f)} for f, o in pairs]

    train, val, counts = [], [], {}
    for c in classes:
        t, v = mix_class(c, real[c], synthetic.get(c, []), params, parents, largest, hint)
        train += rows(t, c)
        val += rows(v, c)
        counts[c] = {
            "original": sum(o == "original" for _, o in t),
            "synthetic": sum(o == "synthetic" for _, o in t),
            "val": len(v),
        }
        if excluded.get(c):  # only where some were: data/mixed stays the same bytes when none are
            counts[c]["test_copies_excluded"] = len(excluded[c])
    return train, val, counts


def summary(params, train: list[dict], val: list[dict], excluded: dict[str, list[str]]) -> dict:
    """metrics/mix.json: what trained the model, in one line and in counts."""
    synthetic_images = sum(r["origin"] == "synthetic" for r in train)
    # `none` at p > 0 adds nothing, a source at p = 0 neither.
    how = "balanced" if params.mode == "balance" else f"p = {params.p:g}"
    return {
        "composition": f"{len(train) - synthetic_images} real + {synthetic_images} {params.source} ({how})",
        "source": params.source,
        "train_images": len(train),
        "real_images": len(train) - synthetic_images,
        "synthetic_images": synthetic_images,
        "val_images": len(val),
        "val_synthetic_images": sum(r["origin"] == "synthetic" for r in val),
        "test_copies_excluded": sum(len(files) for files in excluded.values()),
    }


def main() -> None:
    all_params = load_params()
    classes = read_json(ORIGINAL / "classes.json")
    real, real_hash, synthetic, parents, excluded = inputs(all_params, classes)
    train, val, counts = mix_rows(all_params, classes, real_hash, real, synthetic, parents, excluded)
    with atomic_dir(MIXED) as out:
        write_csv(out / "train.csv", train, MIXED_COLUMNS)
        write_csv(out / "val.csv", val, MIXED_COLUMNS)
        write_json(out / "classes.json", classes)
        write_json(out / "report.json", counts)
    report = summary(all_params.mix, train, val, excluded)
    write_json(paths.metrics("mix"), report)
    print(
        f"mix: {report['composition']} training images, {report['val_images']} validation; "
        f"{report['test_copies_excluded']} near duplicates of test images left out"
    )


if __name__ == "__main__":
    run(main)
