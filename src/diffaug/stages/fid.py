"""Stage `fid@<source>`: FID and KID between d_original and data/synthetic/<source>, per class and
overall (models/fid_reference + data/synthetic/<source> -> metrics/fid/<source>.json)."""
import sys
from pathlib import Path

from diffaug.config import SOURCE_STAGE, load_params
from diffaug.device import pick_device
from diffaug.errors import DiffaugError
from diffaug.io import write_json
from diffaug.metrics.compare import OVERALL, class_features, compare, folder_files, load_features
from diffaug.metrics.features import make_extractor
from diffaug.stages import run

REFERENCE, FEATURES = Path("models/reference"), Path("models/fid_reference")


def main() -> None:
    source = sys.argv[1]
    params = load_params().fid
    original, meta = load_features(FEATURES)
    extractor = make_extractor(params.features, REFERENCE, pick_device(params.device))
    if extractor.identity != meta["extractor_id"]:  # never compare features of two different networks
        raise DiffaugError(f"{FEATURES} was made with {meta['extractor_id']}, fid.features gives "
                           f"{extractor.identity}; run `dvc repro fid_reference`.")
    folder = Path("data/synthetic") / source
    if not folder.is_dir():
        raise DiffaugError(f"{folder} does not exist; produce it with `dvc repro {SOURCE_STAGE.get(source, source)}`.")
    classes = meta["classes"]
    synthetic = class_features(extractor, folder_files(folder, classes), params.batch_size)
    scores = compare(original, synthetic, classes, params.kid_subsets, params.kid_subset_size, params.seed)
    overall = scores.pop(OVERALL)
    report = {"source": source, "extractor": meta["extractor"], "extractor_id": meta["extractor_id"],
              **overall, "per_class": scores}
    write_json(f"metrics/fid/{source}.json", report)
    print(f"fid@{source}: FID {overall['fid']:.2f}, KID {overall['kid']:.4f} ± {overall['kid_std']:.4f} "
          f"({meta['extractor']} features)")


if __name__ == "__main__":
    run(main)
