"""Stage `fid_reference`: features of d_original per class, computed once for every `measure_<kind>@<source>`
(data/original -> models/fid_reference), and the sample grid of the real images."""

from diffaug import paths
from diffaug.cli import run
from diffaug.device import pick_device
from diffaug.io import read_csv, read_json
from diffaug.metrics.compare import class_features, save_features
from diffaug.metrics.features import make_extractor
from diffaug.params import load_params
from diffaug.paths import FID_REFERENCE, ORIGINAL, REFERENCE
from diffaug.plots import sample_grid, save_grid


def main() -> None:
    params = load_params().fid
    classes = read_json(ORIGINAL / "classes.json")
    rows = read_csv(ORIGINAL / "manifest.csv")
    extractor = make_extractor(params.features, REFERENCE, pick_device(params.device))
    files = {c: [ORIGINAL / r["file"] for r in rows if r["class"] == c] for c in classes}
    features = class_features(extractor, files, params.batch_size)
    meta = {
        "extractor": extractor.name,
        "extractor_id": extractor.identity,
        "image_size": extractor.image_size,
        "classes": classes,
        "images": {c: len(f) for c, f in features.items()},
    }
    save_features(FID_REFERENCE, features, meta)
    save_grid(sample_grid(ORIGINAL, classes), paths.samples("original"))
    print(f"fid_reference: {sum(meta['images'].values())} original images, {extractor.name} features")


if __name__ == "__main__":
    run(main)
