"""Stage `evaluate`: models/classifier on data/test -> metrics/evaluate.json and plots/."""
from pathlib import Path

from diffaug.classify.evaluate import score
from diffaug.classify.data import load_manifest_images
from diffaug.classify.model import load_classifier
from diffaug.classify.train import predict
from diffaug.config import load_params
from diffaug.device import pick_device
from diffaug.errors import DiffaugError
from diffaug.io import atomic_dir, read_csv, read_json, write_json
from diffaug.stages import run

MODEL, TEST, PLOTS = Path("models/classifier"), Path("data/test"), Path("plots/evaluate")


def main() -> None:
    params = load_params()
    device = pick_device(params.train.device)
    model, meta = load_classifier(MODEL)
    classes = read_json(TEST / "classes.json")
    if classes != meta["classes"]:
        raise DiffaugError(f"the classifier knows {meta['classes']} but data/test has {classes}; run `dvc repro`.")
    images, labels = load_manifest_images(read_csv(TEST / "manifest.csv"), classes, meta["image_size"], TEST)
    predicted = predict(model.to(device), images, device, params.evaluate.batch_size).argmax(1)
    metrics, confusion, bars = score(labels.numpy(), predicted.numpy(), classes)
    write_json("metrics/evaluate.json", metrics)
    with atomic_dir(PLOTS) as out:
        write_json(out / "confusion.json", confusion)
        write_json(out / "per_class_accuracy.json", bars)
    print(f"evaluate: test accuracy {metrics['accuracy']:.4f}, macro-F1 {metrics['macro_f1']:.4f}")


if __name__ == "__main__":
    run(main)
