"""Stage `recognise@<source>`: how often the reference classifier (trained on d_original) assigns
a synthetic image to the class it was generated for, overall and per class (chance = 1/classes)."""
import sys
from pathlib import Path

from diffaug.classify.classifier import classify_manifest
from diffaug.classify.evaluate import score
from diffaug.config import load_params
from diffaug.device import pick_device
from diffaug.io import read_csv, read_json, write_json
from diffaug.stages import run

MODEL = Path("models/reference")


def main() -> None:
    source = sys.argv[1]
    params = load_params()
    folder = Path("data/synthetic") / source
    classes = read_json("data/original/classes.json")
    y_true, y_pred = classify_manifest(MODEL, read_csv(folder / "manifest.csv"), classes,
                                       pick_device(params.train.device), params.evaluate.batch_size, folder)
    metrics, _, _ = score(y_true, y_pred, classes)
    report = {"recognised": metrics["accuracy"], "images": metrics["test_images"],
              "per_class": metrics["per_class_accuracy"]}
    write_json(f"metrics/recognise/{source}.json", report)
    print(f"recognise: {report['recognised']:.1%} of {report['images']} {source} images recognised as their class")


if __name__ == "__main__":
    run(main)
