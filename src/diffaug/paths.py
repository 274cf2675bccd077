"""The pipeline's files: the one place their paths are written.

dvc.yaml declares the same paths as stage deps and outs; tests/test_paths.py holds the two equal, so a path
changed in one place and not the other fails the suite. Every path is relative to the repository root, where DVC
runs each stage.
"""

from pathlib import Path

RAW = Path("data/raw")  # scrape: every image of the dataset, a folder per class
ORIGINAL = Path("data/original")  # split: d_original, the real training images
TEST = Path("data/test")  # split: d_test
POOL = Path("data/pool")  # split: real images held out of d_original (the real sources draw from them)
PROMPTS = Path("data/prompts.json")  # prompts: a prompt per class
SYNTHETIC = Path("data/synthetic")  # a folder per source: d_synthetic
MIXED = Path("data/mixed")  # mix: the training and validation manifests

BASE = Path("models/base")  # base_model: the Stable Diffusion pipeline every source starts from
REFERENCE = Path("models/reference")  # reference: the classifier trained on d_original (filter, recognition)
FID_REFERENCE = Path("models/fid_reference")  # fid_reference: d_original's features, what FID and KID compare with
CLASSIFIER = Path("models/classifier")  # train: the classifier of the mix

METRICS = Path("metrics")
TRAIN_CURVES = METRICS / "train"  # train: metrics.json and the loss curves
SAMPLES = Path("plots/samples")  # a sample grid per image set
EVALUATE_PLOTS = Path("plots/evaluate")  # evaluate: confusion matrix and per-class accuracy


def synthetic(source: str) -> Path:
    """d_synthetic of one source."""
    return SYNTHETIC / source


def finetuned(method: str, label: str | None = None) -> Path:
    """models/<method> (dreambooth, textual_inversion), or one class's fine-tuned weights in it."""
    root = Path("models") / method
    return root if label is None else root / label


def samples(name: str) -> Path:
    """The sample grid of an image set (a source, or `original`)."""
    return SAMPLES / f"{name}.png"


def metrics(name: str) -> Path:
    """metrics/<name>.json; `name` may have a folder: `generate/vanilla`."""
    return METRICS / f"{name}.json"


def metrics_key(name: str) -> str:
    """The key of metrics/<name>.json in `dvc exp show --json` and `dvc metrics show`."""
    return metrics(name).as_posix()


def metrics_name(key: str, folder: str) -> str | None:
    """`vanilla` for the key metrics/<folder>/vanilla.json, None for a key of any other file."""
    prefix, suffix = f"{METRICS.as_posix()}/{folder}/", ".json"
    name = key[len(prefix) : -len(suffix)] if key.startswith(prefix) and key.endswith(suffix) else ""
    return name if name and "/" not in name else None
