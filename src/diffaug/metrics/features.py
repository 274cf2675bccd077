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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

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
        x = load_images(files[start : start + batch_size], extractor.image_size).to(extractor.device)
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
    return Extractor(
        "reference",
        "reference:" + sha256_file(folder / "model.safetensors"),
        meta["image_size"],
        lambda x: model(normalize(x)),
        device,
    )


# SHA-256 of pytorch-fid's weights file (FID_WEIGHTS_URL, its release "fid_weights"): the digest that
# genforce (metrics/inception.py, _MODEL_URL_SHA256["tf_inception_v3"]) and others record for this URL.
# It starts with the 6726825d the file name carries, torch.hub's convention for a hash prefix.
INCEPTION_SHA256 = "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"


def inception_weights_path() -> Path:
    """Where pytorch-fid's weights are looked for: $TORCH_HOME/hub/checkpoints/pt_inception-....pth."""
    from pytorch_fid.inception import FID_WEIGHTS_URL

    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(FID_WEIGHTS_URL)


def _download_inception(path: Path) -> None:
    from pytorch_fid.inception import FID_WEIGHTS_URL

    path.parent.mkdir(parents=True, exist_ok=True)
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(60)  # torch.hub has no timeout of its own
    try:
        torch.hub.download_url_to_file(FID_WEIGHTS_URL, str(path), progress=False)  # via a temporary file
    except Exception as e:
        raise DiffaugError(
            f"pytorch-fid's Inception weights are not available ({type(e).__name__}): put {path.name} from "
            f"{FID_WEIGHTS_URL} at {path} (set TORCH_HOME to use another folder), or use fid.features=reference."
        ) from None
    finally:
        socket.setdefaulttimeout(previous)


def inception_state_dict(path: Path) -> dict:
    """The weights file's tensors, once its SHA-256 is the known one: only then is it opened at all, and
    then without unpickling code (weights_only)."""
    from pytorch_fid.inception import FID_WEIGHTS_URL

    digest = sha256_file(path)
    if digest != INCEPTION_SHA256:
        raise DiffaugError(
            f"{path} is not pytorch-fid's InceptionV3 weights (SHA-256 {digest}, expected {INCEPTION_SHA256}); "
            f"delete it and download it again from {FID_WEIGHTS_URL}."
        )
    return torch.load(path, map_location="cpu", weights_only=True)


def fid_inception(state: dict) -> nn.Module:
    """pytorch-fid's FID InceptionV3 up to its 2048-d pool features, from pytorch-fid's own blocks.

    pytorch_fid.inception.fid_inception_v3 would fetch and unpickle the file itself (weights_only=False),
    so its few lines are repeated here, loading `state` instead; the blocks are the ones InceptionV3 chains.
    """
    from pytorch_fid.inception import FIDInceptionA, FIDInceptionC, FIDInceptionE_1, FIDInceptionE_2, _inception_v3

    net = _inception_v3(num_classes=1008, aux_logits=False, weights=None)
    net.Mixed_5b = FIDInceptionA(192, pool_features=32)
    net.Mixed_5c = FIDInceptionA(256, pool_features=64)
    net.Mixed_5d = FIDInceptionA(288, pool_features=64)
    net.Mixed_6b = FIDInceptionC(768, channels_7x7=128)
    net.Mixed_6c = FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6d = FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6e = FIDInceptionC(768, channels_7x7=192)
    net.Mixed_7b = FIDInceptionE_1(1280)
    net.Mixed_7c = FIDInceptionE_2(2048)
    net.load_state_dict(state)
    return nn.Sequential(
        net.Conv2d_1a_3x3,
        net.Conv2d_2a_3x3,
        net.Conv2d_2b_3x3,
        nn.MaxPool2d(kernel_size=3, stride=2),
        net.Conv2d_3b_1x1,
        net.Conv2d_4a_3x3,
        nn.MaxPool2d(kernel_size=3, stride=2),
        net.Mixed_5b,
        net.Mixed_5c,
        net.Mixed_5d,
        net.Mixed_6a,
        net.Mixed_6b,
        net.Mixed_6c,
        net.Mixed_6d,
        net.Mixed_6e,
        net.Mixed_7a,
        net.Mixed_7b,
        net.Mixed_7c,
        nn.AdaptiveAvgPool2d(output_size=(1, 1)),
    ).requires_grad_(False)


def inception_forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """uint8 images -> (N, 2048), as pytorch-fid's InceptionV3: bilinear to 299 px, scaled to [-1, 1]."""
    x = nn.functional.interpolate(
        x.float() / 255.0, size=(INCEPTION_SIZE, INCEPTION_SIZE), mode="bilinear", align_corners=False
    )
    return model(2 * x - 1).flatten(1)


def inception_extractor(device: torch.device) -> Extractor:
    """pytorch-fid's InceptionV3 with its weights file checked against the known SHA-256 before loading."""
    path = inception_weights_path()
    if not path.is_file():
        _download_inception(path)
    try:
        model = fid_inception(inception_state_dict(path))
    except DiffaugError:
        raise
    except Exception as e:  # the known bytes load; this is a broken installation of torch or pytorch-fid
        raise DiffaugError(
            f"{path} could not be loaded as plain weights ({type(e).__name__}); reinstall torch and "
            "pytorch-fid from requirements.txt, or use fid.features=reference."
        ) from None
    model.eval().to(device)
    return Extractor(
        "inception", "inception:" + path.name, INCEPTION_SIZE, lambda x: inception_forward(model, x), device
    )


def make_extractor(name: str, reference: Path, device: torch.device) -> Extractor:
    return reference_extractor(reference, device) if name == "reference" else inception_extractor(device)
