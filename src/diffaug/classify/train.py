"""The training loop: SGD, optional cosine schedule, best-validation model kept as a real copy.

The budget is a number of SGD steps (`train.steps`): every mix trains as long, whatever its number
of images, so comparing mixes measures data rather than optimiser steps. `train.steps: null` keeps
the paper's fixed epochs, where a smaller training set also means fewer steps.

What keeps a GPU busy (the airbench / hlb-CIFAR10 recipe): the uint8 dataset on the device when it
fits, augmentation there as batched tensor ops, loss and accuracy summed there and read once per
epoch, so a step never waits for the host.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from diffaug.checkpoint import Checkpoints, resumed, rng_states, set_rng_states
from diffaug.classify.data import Augment, Loader, fits_on_device, normalize
from diffaug.classify.model import set_train_mode
from diffaug.device import autocast_dtype
from diffaug.params import Train
from diffaug.progress import bar


@dataclass
class Result:
    state_dict: dict
    best_epoch: int  # 1-based; the last epoch when there is no validation set
    best_val_accuracy: Optional[float]
    history: list[dict] = field(default_factory=list)
    best_step: int = 0  # SGD steps taken by the kept model


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
        x = normalize(images[start : start + batch_size].to(device))  # a no-op when they are there already
        with autocast(device, amp):
            out.append(model(channels_last(x, device)).float())
    return torch.cat(out).cpu() if out else torch.zeros(0)  # one copy back: one sync


def optimisation(model: nn.Module, cfg: Train, device: torch.device):
    """Put `model` on `device` (channels-last on CUDA); return its SGD optimizer, the lr schedule (or
    None), the autocast dtype (or None) and the gradient scaler (active for fp16 only). The cosine
    schedule runs over the budget: steps, or epochs in the fixed-epoch budget."""
    model.to(device)
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)
        torch.backends.cudnn.benchmark = True
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    scheduler = (
        torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.steps or cfg.epochs)
        if cfg.lr_schedule == "cosine"
        else None
    )
    amp = autocast_dtype(device)
    return optimizer, scheduler, amp, torch.amp.GradScaler("cuda", enabled=amp == torch.float16)


def channels_last(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """`x` in the memory layout `optimisation` gives the model on CUDA."""
    return x.contiguous(memory_format=torch.channels_last) if device.type == "cuda" else x


def autocast(device: torch.device, amp: Optional[torch.dtype]):
    """The mixed-precision context of a forward pass (none where `amp` is None)."""
    return torch.autocast(device.type, dtype=amp) if amp else contextlib.nullcontext()


def sgd_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, opt, device: torch.device):
    """One optimiser step on normalized images `x` and labels `y` (on `device`): the cross-entropy under
    autocast, backward through the gradient scaler; returns the logits and the loss."""
    optimizer, _, amp, scaler = opt
    x = channels_last(x, device)
    with autocast(device, amp):
        logits = model(x)
        loss = F.cross_entropy(logits, y)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return logits, loss


@dataclass(frozen=True)
class Batch:
    idx: torch.Tensor  # training-set indices
    epoch: int  # 1-based pass over the training set this batch starts in
    ends_round: bool  # validate (and, in the fixed-epoch budget, step the lr schedule) after it
    position: dict = field(default_factory=dict, compare=False)  # where the order stands after it: to resume


def batch_starts(n: int, batch_size: int) -> list[int]:
    """Where a pass's batches start; a last batch of one image is dropped (it breaks batch-norm statistics)."""
    return [s for s in range(0, n, batch_size) if not (n - s < 2 and s)]


def epoch_batches(n: int, cfg: Train, generator: torch.Generator, start: Optional[dict] = None) -> Iterator[Batch]:
    """The fixed-epoch budget: `epochs` shuffled passes, a round per pass (its last short batch
    kept, unless it has a single image, which would break batch-norm statistics). `start`: a
    batch's `position`, to go on after it."""
    epoch, order, first = (start["epoch"], start["order"], start["next"]) if start else (1, None, 0)
    starts = batch_starts(n, cfg.batch_size)
    while epoch <= cfg.epochs:
        if order is None:
            # Drawn lazily, at the start of each pass, after the previous pass's augmentation draws.
            order = torch.randperm(n, generator=generator)
        for i in range(first, len(starts)):
            at = {"epoch": epoch, "order": order, "next": i + 1}
            yield Batch(order[starts[i] : starts[i] + cfg.batch_size], epoch, i == len(starts) - 1, at)
        epoch, order, first = epoch + 1, None, 0


def step_batches(n: int, cfg: Train, generator: torch.Generator, start: Optional[dict] = None) -> Iterator[Batch]:
    """The step budget: a stream of shuffled passes over the training set cut into `steps` full
    batches, so every run sees steps x batch_size images however many it has (a batch may span two
    passes, and a set smaller than a batch repeats within it); a round every `val_every` steps.
    `start`: a batch's `position`, to go on after it."""
    done, stream, epoch = (
        (start["step"], start["stream"], start["epoch"]) if start else (0, torch.zeros(0, dtype=torch.int64), 0)
    )
    for step in range(done + 1, cfg.steps + 1):
        start_epoch = epoch + (len(stream) == 0)
        while len(stream) < cfg.batch_size:
            stream = torch.cat([stream, torch.randperm(n, generator=generator)])
            epoch += 1
        idx, stream = stream[: cfg.batch_size], stream[cfg.batch_size :]
        at = {"step": step, "stream": stream, "epoch": epoch}
        yield Batch(idx, start_epoch, step % cfg.val_every == 0 or step == cfg.steps, at)


def budget(n: int, cfg: Train) -> dict:
    """The budget a run of `n` training images takes: SGD steps and images seen."""
    if cfg.steps:
        return {"budget": "steps", "steps": cfg.steps, "images_seen": cfg.steps * cfg.batch_size}
    starts = batch_starts(n, cfg.batch_size)
    images = sum(min(cfg.batch_size, n - s) for s in starts)
    return {"budget": "epochs", "steps": len(starts) * cfg.epochs, "images_seen": images * cfg.epochs}


@dataclass
class Run:
    """Where a training run stands: what a checkpoint holds besides the model, optimizer and RNGs."""

    loss_sum: torch.Tensor  # the round so far, summed on the device: read once per round
    correct: torch.Tensor
    step: int = 0
    seen: int = 0
    best: Optional[tuple] = None  # (key, metrics, CPU state dict) of the kept model
    history: list[dict] = field(default_factory=list)
    position: Optional[dict] = None  # the batch order's, after the last step


def fit(
    model: nn.Module,
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor],
    cfg: Train,
    device: torch.device,
    generator: torch.Generator,
    log: Callable[[dict], None] = lambda m: None,
    checkpoints: Optional[Checkpoints] = None,
) -> Result:
    opt = optimisation(model, cfg, device)
    augment = Augment(cfg.augment, cfg.hflip, generator)
    resident = fits_on_device(train[0].nbytes + val[0].nbytes, device)
    loader = Loader(*train, device, cfg.batch_size, resident)
    if resident:
        val = (val[0].to(device), val[1])
    # torch.compile traces the training steps; validation runs the plain module (no recompiles on
    # eval mode and the last batch's shape) on the same weights.
    step_model = torch.compile(model) if cfg.compile else model
    # float64 sums of float32 losses: the same numbers as summing loss.item() on the host (MPS has no float64).
    sum_dtype = torch.float32 if device.type == "mps" else torch.float64
    run = Run(torch.zeros((), dtype=sum_dtype, device=device), torch.zeros((), dtype=torch.int64, device=device))
    total = budget(len(loader), cfg)["steps"]
    if checkpoints:
        resume(checkpoints, model, opt, generator, run, total, log)
    batches = (step_batches if cfg.steps else epoch_batches)(len(loader), cfg, generator, run.position)
    set_train_mode(model, cfg.regime)
    with bar(total, "train", "step", initial=run.step) as progress:
        for batch in batches:
            train_step(step_model, loader, augment, batch, opt, cfg, device, run)
            progress.update()
            if batch.ends_round:
                end_round(model, val, cfg, device, run, log, progress, batch.epoch)
            if checkpoints and checkpoints.due(run.step, total):
                checkpoints.save(snapshot(model, opt, generator, run))
    _, at, state = run.best
    return Result(state, at["epoch"], at.get("val_accuracy"), run.history, at["step"])


def resume(checkpoints: Checkpoints, model: nn.Module, opt, generator, run: Run, total: int, log) -> None:
    """Where a killed run's last checkpoint left off, if it left one: weights, optimizer, RNGs and curves."""
    saved = checkpoints.load()
    if saved:
        restore(saved, model, opt, generator, run)
        for metrics in run.history:  # the curves the killed run had logged
            log(metrics)
        resumed(run.step, total, "train")


def train_step(step_model, loader, augment, batch: Batch, opt, cfg: Train, device: torch.device, run: Run) -> None:
    """One SGD step on `batch`; the loss and hits join the round's sums on the device."""
    x, y = loader(batch.idx)
    logits, loss = sgd_step(step_model, normalize(augment(x)), y, opt, device)
    run.step += 1
    run.seen += len(batch.idx)
    run.position = batch.position
    run.loss_sum += loss.detach().to(run.loss_sum.dtype) * len(batch.idx)
    run.correct += (logits.argmax(1) == y).sum()
    scheduler = opt[1]
    if scheduler and (cfg.steps or batch.ends_round):
        scheduler.step()


def end_round(model: nn.Module, val, cfg: Train, device: torch.device, run: Run, log, progress, epoch: int) -> None:
    """Validate, log, keep the model if it is the best so far, and start the next round's sums."""
    seen = max(run.seen, 1)
    metrics = {
        "epoch": epoch,
        "step": run.step,
        "train_loss": run.loss_sum.item() / seen,  # the round's only host syncs
        "train_accuracy": run.correct.item() / seen,
    }
    metrics.update(validate(model, val, device, cfg.batch_size))
    metrics = {k: round(v, 6) if isinstance(v, float) else v for k, v in metrics.items()}
    run.history.append(metrics)
    log(metrics)
    # The round's numbers, read without another sync: a per-step loss would wait for the GPU every step.
    progress.set_postfix(
        {k.replace("_accuracy", "_acc"): v for k, v in metrics.items() if k in ("train_loss", "val_accuracy")},
        refresh=False,
    )
    # Best validation accuracy, ties to the lower validation loss; without validation, the last.
    key = (metrics.get("val_accuracy", 0.0), -metrics.get("val_loss", -run.step))
    if run.best is None or key > run.best[0]:
        state = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}
        run.best = (key, metrics, state)
    run.seen = 0
    run.loss_sum.zero_()
    run.correct.zero_()
    set_train_mode(model, cfg.regime)


def snapshot(model: nn.Module, opt, generator: torch.Generator, run: Run) -> dict:
    """Everything a resumed run needs to end with the same bytes, as tensors and plain containers."""
    optimizer, scheduler, _, scaler = opt
    return {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler else None,
        "scaler": scaler.state_dict(),
        "rng": rng_states(generator),
        "run": {**vars(run), "loss_sum": run.loss_sum.cpu(), "correct": run.correct.cpu()},
    }


def restore(saved: dict, model: nn.Module, opt, generator: torch.Generator, run: Run) -> None:
    optimizer, scheduler, _, scaler = opt
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    if scheduler:
        scheduler.load_state_dict(saved["scheduler"])
    scaler.load_state_dict(saved["scaler"])
    set_rng_states(saved["rng"], generator)
    device = run.loss_sum.device
    vars(run).update({**saved["run"], "loss_sum": saved["run"]["loss_sum"].to(device)})
    run.correct = run.correct.to(device)


def validate(model: nn.Module, val: tuple[torch.Tensor, torch.Tensor], device: torch.device, batch_size: int) -> dict:
    if not len(val[0]):
        return {}
    logits = predict(model, val[0], device, batch_size)
    return {
        "val_loss": F.cross_entropy(logits, val[1]).item(),
        "val_accuracy": (logits.argmax(1) == val[1]).double().mean().item(),
    }
