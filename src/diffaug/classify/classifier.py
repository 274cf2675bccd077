"""A classifier end to end, for the stages: train from manifests and save; load and score."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from safetensors.torch import save_file

from diffaug.checkpoint import Checkpoints
from diffaug.classify.data import IMAGENET_MEAN, IMAGENET_STD, load_manifest_images
from diffaug.classify.model import build_model, load_classifier, use_small_stem
from diffaug.classify.train import Result, fit, predict, seed_everything
from diffaug.errors import DiffaugError
from diffaug.io import atomic_dir, read_csv, write_json
from diffaug.params import Train


def train_classifier(
    train_rows: list[dict],
    val_rows: list[dict],
    classes: list[str],
    cfg: Train,
    device: torch.device,
    log: Callable[[dict], None] = lambda m: None,
    root: Path = Path("."),
    checkpoints: Optional[Checkpoints] = None,
) -> tuple[Result, dict]:
    """Seed, build (failing fast if ImageNet weights are missing), decode the images once, fit
    (resuming from `checkpoints` where a killed run left one)."""
    small_stem = use_small_stem(cfg.small_stem, cfg.image_size)
    generator = seed_everything(cfg.seed)
    model = build_model(len(classes), cfg.regime, small_stem)
    train = load_manifest_images(train_rows, classes, cfg.image_size, root)
    val = load_manifest_images(val_rows, classes, cfg.image_size, root)
    print(f"{len(train[0])} training and {len(val[0])} validation images, {cfg.regime} on {device}")
    result = fit(model, train, val, cfg, device, generator, log, checkpoints)
    meta = {
        "architecture": "resnet18",
        "classes": classes,
        "image_size": cfg.image_size,
        "small_stem": small_stem,
        "mean": IMAGENET_MEAN,
        "std": IMAGENET_STD,
        "regime": cfg.regime,
        "best_epoch": result.best_epoch,
        "best_val_accuracy": result.best_val_accuracy,
    }
    return result, meta


def save_classifier(folder: Path, result: Result, meta: dict) -> None:
    with atomic_dir(folder) as out:
        save_file(result.state_dict, out / "model.safetensors")
        write_json(out / "meta.json", meta)


def manifest_probabilities(
    folder: Path, rows: list[dict], classes: list[str], device: torch.device, batch_size: int, root: Path = Path(".")
) -> tuple[np.ndarray, np.ndarray]:
    """(true labels, (N, classes) softmax probabilities) of a manifest's images by the classifier in `folder`."""
    model, meta = load_classifier(folder)
    if meta["classes"] != classes:
        raise DiffaugError(
            f"the classifier in {folder} knows {meta['classes']}, the images are of {classes}; run `dvc repro`."
        )
    images, labels = load_manifest_images(rows, classes, meta["image_size"], root)
    logits = predict(model.to(device), images, device, batch_size).reshape(len(rows), len(classes))
    return labels.numpy(), torch.softmax(logits, dim=1).numpy()


def classify_manifest(
    folder: Path, rows: list[dict], classes: list[str], device: torch.device, batch_size: int, root: Path = Path(".")
) -> tuple[np.ndarray, np.ndarray]:
    """(true labels, predicted labels) of a manifest's images by the classifier saved in `folder`."""
    labels, probabilities = manifest_probabilities(folder, rows, classes, device, batch_size, root)
    return labels, probabilities.argmax(1)


def classify_folder(
    model: Path, folder: Path, classes: list[str], device: torch.device, batch_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """(true labels, predicted labels) of the images `folder`'s manifest.csv lists, by the classifier in `model`."""
    return classify_manifest(model, read_csv(folder / "manifest.csv"), classes, device, batch_size, folder)
