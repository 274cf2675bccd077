"""Stage `mix`: data/original + data/synthetic/<mix.source> -> data/mixed (manifests, not copies)."""
from pathlib import Path

from diffaug.cli import run
from diffaug.config import load_params
from diffaug.data.mix import MIXED_COLUMNS, mix_class, parents_of, synthetic_files
from diffaug.io import atomic_dir, read_csv, read_json, sha256_file, write_csv, write_json

ORIGINAL, SYNTHETIC, MIXED = Path("data/original"), Path("data/synthetic"), Path("data/mixed")


def more_of(params, source: str) -> str:
    """How to get more images of `source`, in words (for mix's error)."""
    kind = params.sources.kinds().get(source)
    if kind == "filtered":
        return (f"raise sources.filtered.{source}.candidates (or {params.source_count(source, 1)[1]}) or lower the "
                "filter's threshold")
    if kind == "img2img":
        return "raise img2img.per_class or img2img.per_image"
    if kind == "real":  # the pool holds at most what d_original and d_test leave of the scraped images
        return "raise split.pool_per_class (and scrape more images if the pool has run out)"
    return "raise generate.per_class"


def main() -> None:
    all_params = load_params()
    params = all_params.mix
    classes = read_json(ORIGINAL / "classes.json")
    original = read_csv(ORIGINAL / "manifest.csv")
    real_hash = {str(ORIGINAL / r["file"]): r["sha256"] for r in original}
    real = {c: [str(ORIGINAL / r["file"]) for r in original if r["class"] == c] for c in classes}
    synthetic = {} if params.source == "none" else \
        synthetic_files(SYNTHETIC, params.source, classes, all_params.sources.stage(params.source))
    parents = {} if params.source == "none" else parents_of(SYNTHETIC, params.source, ORIGINAL)
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
        counts[c] = {"original": sum(o == "original" for _, o in t), "synthetic": sum(o == "synthetic" for _, o in t),
                     "val": len(v)}
    with atomic_dir(MIXED) as out:
        write_csv(out / "train.csv", train, MIXED_COLUMNS)
        write_csv(out / "val.csv", val, MIXED_COLUMNS)
        write_json(out / "classes.json", classes)
        write_json(out / "report.json", counts)
    synthetic_images = sum(r["origin"] == "synthetic" for r in train)
    # One line that says what trained the model: `none` at p > 0 adds nothing, a source at p = 0 neither.
    how = "balanced" if params.mode == "balance" else f"p = {params.p:g}"
    composition = f"{len(train) - synthetic_images} real + {synthetic_images} {params.source} ({how})"
    report = {
        "composition": composition,
        "source": params.source,
        "train_images": len(train),
        "real_images": len(train) - synthetic_images,
        "synthetic_images": synthetic_images,
        "val_images": len(val),
        "val_synthetic_images": sum(r["origin"] == "synthetic" for r in val),
    }
    write_json("metrics/mix.json", report)
    print(f"mix: {composition} training images, {report['val_images']} validation")


if __name__ == "__main__":
    run(main)
