"""Feature extractors for FID/KID and the one image loader both real and synthetic images go through.

`reference`: the penultimate (pooled, 512-d) layer of the ResNet-18 that the `reference` stage
trains on d_original; it needs no download, so the built-in default runs offline.
`inception`: pytorch-fid's InceptionV3 (2048-d pool features, TensorFlow FID weights), as the
paper. The two give numbers on different scales: a result records its extractor, and results of
different extractors are never put in one table.
"""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from diffaug.classify.data import load_image, normalize
from diffaug.errors import DiffaugError
from diffaug.io import sha256_file

INCEPTION_SIZE = 299  # InceptionV3's input side


@dataclass
class Extractor:
    name: str  # reference | inception
    identity: str  # which weights exactly: results of different identities are not comparable
    image_size: int
    forward: Callable[[torch.Tensor], torch.Tensor]  # uint8 (N,3,S,S) on the device -> (N, D)
    device: torch.device


def load_images(files: list[Path], size: int) -> torch.Tensor:
    """uint8 (N,3,S,S): RGB, shorter side resized (bilinear) to S, centre crop; the same for every set."""
    images = np.zeros((len(files), size, size, 3), dtype=np.uint8)
    for i, f in enumerate(files):
        images[i] = load_image(Path(f).read_bytes(), size)
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()


@torch.no_grad()
def extract(extractor: Extractor, files: list[Path], batch_size: int) -> np.ndarray:
    """(N, D) float32 features of `files`, in batches (decoded a batch at a time: 299 px sets are big)."""
    out = []
    for start in range(0, len(files), batch_size):
        x = load_images(files[start:start + batch_size], extractor.image_size).to(extractor.device)
        out.append(extractor.forward(x).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)


def reference_extractor(folder: Path, device: torch.device) -> Extractor:
    """The reference classifier without its last layer: ImageNet-normalised input, 512 pooled features."""
    from diffaug.classify.model import load_classifier

    if not (folder / "model.safetensors").is_file():
        raise DiffaugError(f"fid.features=reference needs the classifier in {folder}; run `dvc repro reference`.")
    model, meta = load_classifier(folder)
    model.fc = nn.Identity()
    model.eval().to(device)
    return Extractor("reference", "reference:" + sha256_file(folder / "model.safetensors"), meta["image_size"],
                     lambda x: model(normalize(x)), device)


def inception_weights_path() -> Path:
    """Where pytorch-fid's weights are looked for: $TORCH_HOME/hub/checkpoints/pt_inception-....pth."""
    from pytorch_fid.inception import FID_WEIGHTS_URL

    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(FID_WEIGHTS_URL)


def inception_extractor(device: torch.device) -> Extractor:
    """pytorch-fid's InceptionV3, built by pytorch-fid itself (its weights come through torch.hub)."""
    from pytorch_fid.inception import FID_WEIGHTS_URL, InceptionV3

    path = inception_weights_path()
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(60)  # torch.hub has no timeout of its own
    try:
        model = InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[2048]])
    except Exception as e:
        if path.exists():
            raise DiffaugError(f"{path} is not pytorch-fid's InceptionV3 weights ({type(e).__name__}); "
                               "delete it and download it again.") from None
        raise DiffaugError(
            f"pytorch-fid's Inception weights are not available ({type(e).__name__}): put {path.name} from "
            f"{FID_WEIGHTS_URL} at {path} (set TORCH_HOME to use another folder), or use fid.features=reference."
        ) from None
    finally:
        socket.setdefaulttimeout(previous)
    model.eval().to(device)
    # InceptionV3 takes floats in [0, 1] (it rescales to [-1, 1] itself) and returns (N, 2048, 1, 1).
    return Extractor("inception", "inception:" + path.name, INCEPTION_SIZE,
                     lambda x: model(x.float() / 255.0)[0].flatten(1), device)


def make_extractor(name: str, reference: Path, device: torch.device) -> Extractor:
    return reference_extractor(reference, device) if name == "reference" else inception_extractor(device)
