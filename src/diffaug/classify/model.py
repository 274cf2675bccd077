"""ResNet-18 for the three regimes of the study: scratch, finetune (ImageNet), frozen backbone."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import torch
from torch import nn
from torchvision.models import ResNet18_Weights, resnet18

from diffaug.errors import DiffaugError

WEIGHTS = ResNet18_Weights.IMAGENET1K_V1


def use_small_stem(setting: str, image_size: int) -> bool:
    """The CIFAR-style stem (3x3 stride-1 conv, no max-pool) keeps small images from shrinking to
    1x1 by the last block; `auto` turns it on at 64 px and below."""
    return image_size <= 64 if setting == "auto" else setting == "true"


def imagenet_weights_path() -> Path:
    """Where torchvision keeps the ImageNet ResNet-18 file (under $TORCH_HOME/hub/checkpoints)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(WEIGHTS.url)


def imagenet_state_dict() -> dict:
    """torchvision's ImageNet weights: from the local cache, else downloaded (hash-checked)."""
    path = imagenet_weights_path()
    if not path.exists():
        previous = socket.getdefaulttimeout()
        socket.setdefaulttimeout(60)  # torch.hub has no timeout of its own
        try:
            torch.hub.load_state_dict_from_url(WEIGHTS.url, progress=False, check_hash=True, weights_only=True)
        except Exception as e:
            raise DiffaugError(
                f"ImageNet weights for ResNet-18 are not available ({type(e).__name__}): put {path.name} "
                f"from {WEIGHTS.url} at {path} (set TORCH_HOME to use another folder), or use train.regime=scratch."
            ) from None
        finally:
            socket.setdefaulttimeout(previous)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise DiffaugError(
            f"{path} is not a readable ResNet-18 state dict ({e}); delete it and download again."
        ) from None


def build_model(num_classes: int, regime: str, small_stem: bool) -> nn.Module:
    model = resnet18(weights=None)
    if regime in ("finetune", "frozen"):
        state = imagenet_state_dict()
        try:
            model.load_state_dict(state)
        except RuntimeError as e:
            raise DiffaugError(f"{imagenet_weights_path()} does not hold ResNet-18 ImageNet weights ({e}).") from None
    if small_stem:
        # The ImageNet 7x7 stride-2 filters do not fit; this layer starts from scratch in every regime.
        model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
    model.fc = nn.Linear(model.fc.in_features, num_classes)
    if regime == "frozen":
        for name, param in model.named_parameters():
            param.requires_grad = name.startswith("fc.") or (small_stem and name.startswith("conv1."))
    return model


def set_train_mode(model: nn.Module, regime: str) -> None:
    """In the frozen regime the backbone's batch-norm statistics stay ImageNet's too."""
    model.train()
    if regime == "frozen":
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.eval()


def load_classifier(folder: Path) -> tuple[nn.Module, dict]:
    """A trained classifier from `train`: safetensors weights plus the meta.json beside them."""
    import json

    from safetensors.torch import load_file

    meta = json.loads((folder / "meta.json").read_text())
    model = build_model(len(meta["classes"]), "scratch", meta["small_stem"])
    model.load_state_dict(load_file(folder / "model.safetensors"))
    return model, meta
