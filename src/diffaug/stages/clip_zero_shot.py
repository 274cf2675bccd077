"""Stage `clip_zero_shot`: zero-shot CLIP on data/test -> metrics/clip.json (accuracy, per class).

`clip.model: null` (the offline default) writes a note saying it was skipped, so the default
pipeline needs no download; set `clip.model` to a hub id or folder to measure the baseline.
"""

import numpy as np

from diffaug import paths
from diffaug.cli import run
from diffaug.io import read_csv, read_json, write_json
from diffaug.params import load_params
from diffaug.paths import TEST

CLIP_METRICS = paths.metrics("clip")


def main() -> None:
    params = load_params().clip
    if params.model is None:
        write_json(CLIP_METRICS, {"model": None, "skipped": "clip.model is null; set it to a CLIP model to measure it"})
        print("clip_zero_shot: skipped (clip.model is null)")
        return
    # Imported here: the skipped default then starts without torch or transformers.
    from diffaug.classify.clip import load_clip, zero_shot
    from diffaug.classify.evaluate import score
    from diffaug.device import pick_device

    classes = read_json(TEST / "classes.json")
    rows = read_csv(TEST / "manifest.csv")
    model, processor = load_clip(params.model, params.revision)
    predicted = zero_shot(
        model,
        processor,
        [TEST / r["file"] for r in rows],
        classes,
        params.template,
        params.batch_size,
        pick_device(params.device),
    )
    truth = np.array([classes.index(r["class"]) for r in rows])
    metrics, _, _ = score(truth, predicted, classes)
    write_json(
        CLIP_METRICS,
        {
            "model": params.model,
            "revision": params.revision,
            "template": params.template,
            "accuracy": metrics["accuracy"],
            "test_images": metrics["test_images"],
            "per_class_accuracy": metrics["per_class_accuracy"],
        },
    )
    print(f"clip_zero_shot: accuracy {metrics['accuracy']:.4f} with {params.model}")


if __name__ == "__main__":
    run(main)
