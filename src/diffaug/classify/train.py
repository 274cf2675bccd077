"""The training loop: SGD, optional cosine schedule, best-validation model kept as a real copy.

What keeps a GPU busy (the airbench / hlb-CIFAR10 recipe): the uint8 dataset on the device when it
fits, augmentation there as batched tensor ops, loss and accuracy summed there and read once per
epoch, so a step never waits for the host.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from diffaug.classify.data import Augment, Loader, fits_on_device, normalize
from diffaug.classify.model import set_train_mode
from diffaug.config import Train
from diffaug.device import autocast_dtype


@dataclass
class Result:
    state_dict: dict
    best_epoch: int  # 1-based; the last epoch when there is no validation set
    best_val_accuracy: Optional[float]
    history: list[dict] = field(default_factory=list)


def seed_everything(seed: int) -> torch.Generator:
    """Seed torch's global generator (weight init, RandAugment) and return one for shuffling and
    cropping. Call it before building the model: initial weights are part of the result."""
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, device: torch.device, batch_size: int) -> torch.Tensor:
    """Logits for uint8 images, in batches, on `device`; returned on the CPU as float32."""
    model.eval()
    out = []
    amp = autocast_dtype(device)
    for start in range(0, len(images), batch_size):
        x = normalize(images[start:start + batch_size].to(device))  # a no-op when they are there already
        if device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=amp) if amp else contextlib.nullcontext():
            out.append(model(x).float())
    return torch.cat(out).cpu() if out else torch.zeros(0)  # one copy back: one sync


def optimisation(model: nn.Module, cfg: Train, device: torch.device):
    """Put `model` on `device` (channels-last on CUDA); return its SGD optimizer, the lr schedule (or
    None), the autocast dtype (or None) and the gradient scaler (active for fp16 only)."""
    model.to(device)
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)
        torch.backends.cudnn.benchmark = True
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    scheduler = (torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs)
                 if cfg.lr_schedule == "cosine" else None)
    amp = autocast_dtype(device)
    return optimizer, scheduler, amp, torch.amp.GradScaler("cuda", enabled=amp == torch.float16)


def fit(model: nn.Module, train: tuple[torch.Tensor, torch.Tensor], val: tuple[torch.Tensor, torch.Tensor],
        cfg: Train, device: torch.device, generator: torch.Generator,
        log: Callable[[dict], None] = lambda m: None) -> Result:
    optimizer, scheduler, amp, scaler = optimisation(model, cfg, device)
    augment = Augment(cfg.augment, cfg.hflip, generator)
    resident = fits_on_device(train[0].nbytes + val[0].nbytes, device)
    batches = Loader(*train, device, cfg.batch_size, resident)
    if resident:
        val = (val[0].to(device), val[1])
    # torch.compile traces the training steps; validation runs the plain module (no recompiles on
    # eval mode and the last batch's shape) on the same weights.
    step_model = torch.compile(model) if cfg.compile else model
    # float64 sums of float32 losses: the same numbers as summing loss.item() on the host (MPS has no float64).
    sum_dtype = torch.float32 if device.type == "mps" else torch.float64
    best, history = None, []
    for epoch in range(1, cfg.epochs + 1):
        set_train_mode(model, cfg.regime)
        order = torch.randperm(len(batches), generator=generator)
        seen = 0
        loss_sum = torch.zeros((), dtype=sum_dtype, device=device)
        correct = torch.zeros((), dtype=torch.int64, device=device)
        for start in range(0, len(order), cfg.batch_size):
            idx = order[start:start + cfg.batch_size]
            if len(idx) < 2 and seen:  # a batch of one breaks batch-norm statistics
                continue
            x, y = batches(idx)
            x = normalize(augment(x))
            if device.type == "cuda":
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=amp) if amp else contextlib.nullcontext():
                logits = step_model(x)
                loss = F.cross_entropy(logits, y)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            seen += len(idx)
            loss_sum += loss.detach().to(sum_dtype) * len(idx)
            correct += (logits.argmax(1) == y).sum()
        if scheduler:
            scheduler.step()
        metrics = {"epoch": epoch, "train_loss": loss_sum.item() / max(seen, 1),  # the epoch's only host syncs
                   "train_accuracy": correct.item() / max(seen, 1)}
        if len(val[0]):
            logits = predict(model, val[0], device, cfg.batch_size)
            metrics["val_loss"] = F.cross_entropy(logits, val[1]).item()
            metrics["val_accuracy"] = (logits.argmax(1) == val[1]).double().mean().item()
        metrics = {k: round(v, 6) if isinstance(v, float) else v for k, v in metrics.items()}
        history.append(metrics)
        log(metrics)
        # Best validation accuracy, ties to the lower validation loss; without validation, the last.
        key = (metrics.get("val_accuracy", 0.0), -metrics.get("val_loss", -epoch))
        if best is None or key > best[0]:
            state = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}
            best = (key, epoch, state, metrics.get("val_accuracy"))
    _, best_epoch, state, best_val = best
    return Result(state, best_epoch, best_val, history)
