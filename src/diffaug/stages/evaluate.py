"""Stage `evaluate`: models/classifier on data/test -> metrics/evaluate.json and plots/evaluate/."""

from diffaug import paths
from diffaug.classify.classifier import classify_folder
from diffaug.classify.evaluate import score
from diffaug.cli import run
from diffaug.device import pick_device, use_threads
from diffaug.io import atomic_dir, read_json, write_json
from diffaug.params import load_params
from diffaug.paths import CLASSIFIER, EVALUATE_PLOTS, TEST


def main() -> None:
    params = load_params()
    use_threads(params.train.threads)
    classes = read_json(TEST / "classes.json")
    device = pick_device(params.train.device)
    y_true, y_pred = classify_folder(CLASSIFIER, TEST, classes, device, params.evaluate.batch_size)
    metrics, confusion, bars = score(y_true, y_pred, classes)
    write_json(paths.metrics("evaluate"), metrics)
    with atomic_dir(EVALUATE_PLOTS) as out:
        write_json(out / "confusion.json", confusion)
        write_json(out / "per_class_accuracy.json", bars)
    print(f"evaluate: test accuracy {metrics['accuracy']:.4f}, macro-F1 {metrics['macro_f1']:.4f}")


if __name__ == "__main__":
    run(main)
