"""Images for the classifier: decoded once into uint8 tensors, augmented as tensors per batch."""

from __future__ import annotations

import functools
import io
from pathlib import Path

import numpy as np
import torch
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


def load_manifest_images(
    rows: list[dict], classes: list[str], size: int, root: Path = Path(".")
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


@functools.cache
def _statistics(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    # Made once per device: a tensor built from a list on a GPU is a blocking copy.
    return (
        torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1),
        torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1),
    )


def normalize(batch: torch.Tensor) -> torch.Tensor:
    """uint8 (N,3,H,W) -> float, ImageNet statistics (what torchvision's pretrained weights expect)."""
    mean, std = _statistics(batch.device)
    return (batch.float() / 255.0 - mean) / std


def to_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A small CPU tensor (indices, random offsets) to `device` without waiting for the GPU: from
    pageable memory a CUDA copy synchronises the stream; from pinned memory (torch caches those
    blocks) it is queued behind the running step."""
    if device.type == "cuda":
        return x.pin_memory().to(device, non_blocking=True)
    return x.to(device)


# RandAugment draws one op sequence per group of this many images (see Augment).
RANDAUGMENT_GROUP = 16


def crop_flip(x: torch.Tensor, hflip: bool, g: torch.Generator) -> torch.Tensor:
    """Random crop (padding 1/8 of the side, edge replicated) and optional horizontal flip of a batch,
    in two copies and no per-image loop: whole rows picked by one index_select, then columns by one
    gather. Replicate padding is a clamped source index and a flip reverses the column index. It draws
    dy, dx, then the flips from `g`, as the per-image version did, so a seed gives the same pixels."""
    n, c, h, w = x.shape
    pad = max(1, h // 8)
    dy = to_device(torch.randint(0, 2 * pad + 1, (n,), generator=g), x.device)
    dx = to_device(torch.randint(0, 2 * pad + 1, (n,), generator=g), x.device)
    cols = torch.arange(w, device=x.device).expand(n, w)
    if hflip:
        flip = to_device(torch.rand(n, generator=g) < 0.5, x.device).view(n, 1)
        cols = torch.where(flip, w - 1 - cols, cols)
    rows = (dy.view(n, 1) + torch.arange(h, device=x.device) - pad).clamp_(0, h - 1)
    cols = (dx.view(n, 1) + cols - pad).clamp_(0, w - 1)
    # Row r of channel k of image i is row (i*c + k)*h + r of the (n*c*h, w) view.
    planes = torch.arange(n * c, device=x.device).view(n, c, 1) * h
    x = x.reshape(n * c * h, w).index_select(0, (planes + rows.view(n, 1, h)).view(-1)).view(n, c, h, w)
    return x.gather(3, cols.view(n, 1, 1, w).expand(n, c, h, w))


class Augment:
    """Training augmentation on uint8 batches, on whatever device the batch is: `standard` = random
    crop (padding 1/8, edge replicated) plus optional horizontal flip; `randaugment` = RandAugment,
    then the same.

    RandAugment is grouped: each run of RANDAUGMENT_GROUP images shares one draw of torchvision's
    RandAugment (its 2 ops, their signs and magnitude), applied to the group as one batched tensor op.
    Per image, the distribution of ops is the same as per-image RandAugment; what differs is that
    images of a group are not independent (a batch of 512 sees 32 op pairs, not 512), which adds
    batch-to-batch correlation, and it costs a few tensor ops per group instead of per image.
    (torchvision builds the matrix of a geometric op on the host: a short host sync per such group.)
    """

    def __init__(self, kind: str, hflip: bool, generator: torch.Generator):
        self.kind, self.hflip, self.g = kind, hflip, generator
        self.randaugment = v2.RandAugment() if kind == "randaugment" else None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "none":
            return x
        if self.randaugment is not None:
            x = self.grouped_randaugment(x)
        return crop_flip(x, self.hflip, self.g)

    def grouped_randaugment(self, x: torch.Tensor) -> torch.Tensor:
        # torchvision's RandAugment applies one draw to a whole (G,3,H,W) tensor; it draws from
        # torch's global generator, which the trainer seeds.
        return torch.cat([self.randaugment(group) for group in x.split(RANDAUGMENT_GROUP)])


# The dataset moves onto the GPU when it takes at most this share of the free memory: the rest is
# for the model, its activations and cuDNN's workspaces.
DEVICE_DATA_SHARE = 0.25


def fits_on_device(nbytes: int, device: torch.device) -> bool:
    """Whether `nbytes` of images may live on `device` for the whole run (always, on the CPU)."""
    if device.type == "cuda":
        return nbytes <= DEVICE_DATA_SHARE * torch.cuda.mem_get_info(device)[0]
    if device.type == "mps":
        return nbytes <= DEVICE_DATA_SHARE * torch.mps.recommended_max_memory()
    return True


class Loader:
    """uint8 images and labels served on `device` by index. Resident: the whole set was copied to the
    device once and a batch is gathered there. Otherwise each batch is gathered straight into one
    page-locked host buffer, reused (pinning each batch afresh costs another copy of it), and copied
    asynchronously; the next gather waits only for that copy, not for the GPU's work on the batch."""

    def __init__(
        self, images: torch.Tensor, labels: torch.Tensor, device: torch.device, batch_size: int, resident: bool
    ):
        self.device, self.resident = device, resident
        if resident:
            self.images, self.labels = images.to(device), labels.to(device)
            return
        self.images, self.labels = images, labels
        pin = device.type == "cuda"
        self.buffer = torch.empty((batch_size, *images.shape[1:]), dtype=images.dtype, pin_memory=pin)
        self.label_buffer = torch.empty((batch_size,), dtype=labels.dtype, pin_memory=pin)
        self.copied = None  # a CUDA event: the last copy out of the buffers has finished

    def __len__(self) -> int:
        return len(self.images)

    def __call__(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.resident:
            idx = to_device(idx, self.device)
            return self.images[idx], self.labels[idx]
        if self.copied is not None:
            self.copied.synchronize()
        n = len(idx)
        x = torch.index_select(self.images, 0, idx, out=self.buffer[:n])
        y = torch.index_select(self.labels, 0, idx, out=self.label_buffer[:n])
        if self.device.type != "cuda":
            return x.to(self.device, copy=True), y.to(self.device, copy=True)  # never alias the buffer
        x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        self.copied = torch.cuda.Event()
        self.copied.record()
        return x, y
