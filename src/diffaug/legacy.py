"""The classifier's data path and generation's image writing in their former, simpler form (per-image
augmentation on the CPU, PIL images written on the main thread): the benchmarks measure the current
ones against them and the tests check that both give the same numbers. No stage imports this module."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from diffaug.classify.data import Augment, normalize
from diffaug.classify.model import set_train_mode
from diffaug.classify.train import optimisation, sgd_step
from diffaug.diffusion.jobs import Job, Settings, cache_key, cached_path, class_batches
from diffaug.io import atomic_write_bytes
from diffaug.params import Train


class OldAugment(Augment):
    """Per-image RandAugment and a per-image crop loop."""

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "none":
            return x
        if self.randaugment is not None:
            x = torch.stack([self.randaugment(img) for img in x])
        n, _, h, w = x.shape
        pad = max(1, h // 8)
        padded = F.pad(x.float(), (pad, pad, pad, pad), mode="replicate").to(x.dtype)
        dy = torch.randint(0, 2 * pad + 1, (n,), generator=self.g).tolist()
        dx = torch.randint(0, 2 * pad + 1, (n,), generator=self.g).tolist()
        x = torch.stack([padded[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(n)])
        if self.hflip:
            flip = (torch.rand(n, generator=self.g) < 0.5).to(x.device)
            x = torch.where(flip.view(n, 1, 1, 1), x.flip(3), x)
        return x


def to_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    if device.type == "cuda":
        x = x.pin_memory()  # a fresh page-locked buffer every batch
    return x.to(device, non_blocking=True)


def old_fit_epochs(
    model,
    train: tuple[torch.Tensor, torch.Tensor],
    cfg: Train,
    device: torch.device,
    generator: torch.Generator,
    log=lambda epoch: None,
) -> int:
    """The old training loop without validation: augmentation on the CPU, two host syncs per step;
    `log(epoch)` after each epoch. Returns the images seen."""
    opt = optimisation(model, cfg, device)
    scheduler = opt[1]
    augment = OldAugment(cfg.augment, cfg.hflip, generator)
    x_train, y_train = train
    seen = 0
    for epoch in range(1, cfg.epochs + 1):
        set_train_mode(model, cfg.regime)
        order = torch.randperm(len(x_train), generator=generator)
        loss_sum, correct = 0.0, 0
        for start in range(0, len(order), cfg.batch_size):
            idx = order[start : start + cfg.batch_size]
            if len(idx) < 2 and seen:
                continue
            x = normalize(to_device(augment(x_train[idx]), device))
            y = to_device(y_train[idx], device)
            logits, loss = sgd_step(model, x, y, opt, device)
            seen += len(idx)
            loss_sum += loss.item() * len(idx)
            correct += (logits.argmax(1) == y).sum().item()
        if scheduler:
            scheduler.step()
        log(epoch)
    return seen


def old_generate(pipe, jobs: list[Job], settings: Settings, batch_size: int, cache: Optional[str] = None) -> int:
    """PIL images from the pipeline, PNG-encoded and written on the main thread between batches."""
    from diffaug.diffusion.jobs import to_png

    made = 0
    for batch in class_batches(jobs, batch_size):
        generators = [torch.Generator(device="cpu").manual_seed(j.seed) for j in batch]
        images = pipe(
            prompt=[j.prompt for j in batch],
            negative_prompt=[settings.negative_prompt] * len(batch) if settings.negative_prompt else None,
            num_inference_steps=settings.steps,
            guidance_scale=settings.guidance,
            height=settings.height,
            width=settings.width,
            generator=generators,
            output_type="pil",
        ).images
        for job, image in zip(batch, images):
            atomic_write_bytes(cached_path(cache_key(job, settings), cache), to_png(image, settings.save_size))
        made += len(batch)
    return made
