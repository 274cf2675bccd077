"""Images for the classifier: decoded once into uint8 tensors, augmented as tensors per batch."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.transforms import v2

from diffaug.errors import DiffaugError
from diffaug.io import sha256_bytes

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def load_image(data: bytes, size: int) -> np.ndarray:
    """Resize the shorter side to `size`, centre-crop to a square; HWC uint8."""
    with Image.open(io.BytesIO(data)) as im:
        im = im.convert("RGB")
        scale = size / min(im.size)
        w, h = max(size, round(im.width * scale)), max(size, round(im.height * scale))
        im = im.resize((w, h), Image.Resampling.BILINEAR)
        left, top = (w - size) // 2, (h - size) // 2
        return np.asarray(im.crop((left, top, left + size, top + size)), dtype=np.uint8)


def load_manifest_images(rows: list[dict], classes: list[str], size: int, root: Path = Path(".")
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode every file of a manifest once (paths relative to `root`): (N,3,S,S) uint8 images
    and (N,) int64 labels.

    Each file is checked against the hash its manifest recorded, so a model is never trained or
    scored on images that changed after the stage that listed them ran.
    """
    index = {c: i for i, c in enumerate(classes)}
    images = np.zeros((len(rows), size, size, 3), dtype=np.uint8)
    for i, row in enumerate(rows):
        path = root / row["file"]
        if not path.is_file():
            raise DiffaugError(f"{path} is listed in a manifest but missing; run `dvc repro` to rebuild the data.")
        data = path.read_bytes()
        if row.get("sha256") and sha256_bytes(data) != row["sha256"]:
            raise DiffaugError(f"{path} changed after its manifest was written; run `dvc repro` to rebuild it.")
        images[i] = load_image(data, size)
    labels = torch.tensor([index[r["class"]] for r in rows], dtype=torch.int64)
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), labels


def normalize(batch: torch.Tensor) -> torch.Tensor:
    """uint8 (N,3,H,W) -> float, ImageNet statistics (what torchvision's pretrained weights expect)."""
    mean = torch.tensor(IMAGENET_MEAN, device=batch.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=batch.device).view(1, 3, 1, 1)
    return (batch.float() / 255.0 - mean) / std


class Augment:
    """Training augmentation on uint8 batches: `standard` = random crop (padding 1/8, edge
    replicated) plus optional horizontal flip; `randaugment` = RandAugment, then the same."""

    def __init__(self, kind: str, hflip: bool, generator: torch.Generator):
        self.kind, self.hflip, self.g = kind, hflip, generator
        self.randaugment = v2.RandAugment() if kind == "randaugment" else None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "none":
            return x
        if self.randaugment is not None:
            # RandAugment draws from torch's global generator, which the trainer seeds.
            x = torch.stack([self.randaugment(img) for img in x])
        n, _, h, w = x.shape
        pad = max(1, h // 8)
        padded = F.pad(x.float(), (pad, pad, pad, pad), mode="replicate").to(x.dtype)
        dy = torch.randint(0, 2 * pad + 1, (n,), generator=self.g).tolist()
        dx = torch.randint(0, 2 * pad + 1, (n,), generator=self.g).tolist()
        x = torch.stack([padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(n)])
        if self.hflip:
            flip = (torch.rand(n, generator=self.g) < 0.5).to(x.device)
            x = torch.where(flip.view(n, 1, 1, 1), x.flip(3), x)
        return x
