"""What DreamBooth and Textual Inversion share: the instance images, cached latents, the noising
step of the training loss, `accelerate` set-up (mixed precision, gradient accumulation, several
GPUs) and the optimizer. The training loop and its checkpoints are in `tuning`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from diffaug.data.images import to_rgb
from diffaug.device import autocast_dtype, pick_device
from diffaug.errors import DiffaugError
from diffaug.io import list_images
from diffaug.rng import class_rng


def pick_instances(folder: Path, n: int, seed: int, label: str) -> list[Path]:
    """`n` images of one class drawn without replacement, seeded by (seed, class): the same few
    images on every run, different ones per class."""
    files = list_images(folder) if folder.is_dir() else []
    if not files:
        raise DiffaugError(f"{folder} has no images; run `dvc repro split` (or check the class name).")
    if n > len(files):
        raise DiffaugError(
            f"{folder} has {len(files)} images but {n} instance images were asked for; "
            "lower the count or raise split.original_per_class."
        )
    order = class_rng(seed, label).permutation(len(files))[:n]
    return [Path(files[i]) for i in sorted(order)]


def load_pixels(files: list[Path], resolution: int) -> torch.Tensor:
    """Images as the VAE expects them: RGB, resized (shorter side) and centre-cropped, in [-1, 1]."""
    out = []
    for f in files:
        with Image.open(f) as im:
            im = to_rgb(im)
            scale = resolution / min(im.size)
            im = im.resize(
                (max(resolution, round(im.width * scale)), max(resolution, round(im.height * scale))),
                Image.Resampling.BICUBIC,
            )
            left, top = (im.width - resolution) // 2, (im.height - resolution) // 2
            im = im.crop((left, top, left + resolution, top + resolution))
        out.append(torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1))
    return torch.stack(out).float() / 127.5 - 1.0


def native_resolution(pipe) -> int:
    return pipe.unet.config.sample_size * pipe.vae_scale_factor


@dataclass
class Latents:
    """The VAE posterior of each image, encoded once: training then never runs the VAE."""

    mean: torch.Tensor
    std: torch.Tensor
    scaling: float

    @classmethod
    @torch.no_grad()
    def encode(cls, vae, pixels: torch.Tensor, batch: int = 16) -> Latents:
        means, stds = [], []
        param = next(vae.parameters())
        for i in range(0, len(pixels), batch):
            d = vae.encode(pixels[i : i + batch].to(param.device, param.dtype)).latent_dist
            means.append(d.mean.float().cpu())
            stds.append(d.std.float().cpu())
        return cls(torch.cat(means), torch.cat(stds), float(vae.config.scaling_factor))

    def sample(self, idx: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        mean, std = self.mean[idx], self.std[idx]
        return (mean + std * torch.randn(mean.shape, generator=gen)) * self.scaling


def noise_and_target(scheduler, z0: torch.Tensor, gen: torch.Generator, timesteps: Optional[tuple[int, int]] = None):
    """The denoising loss's inputs: noisy latents, timesteps (drawn from `timesteps`, default all of
    the schedule's), and what the UNet must predict."""
    noise = torch.randn(z0.shape, generator=gen)
    low, high = timesteps or (0, scheduler.config.num_train_timesteps)
    t = torch.randint(low, high, (len(z0),), generator=gen)
    zt = scheduler.add_noise(z0, noise, t)
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        return zt, t, noise
    if kind == "v_prediction":
        return zt, t, scheduler.get_velocity(z0, noise, t)
    raise DiffaugError(f"the base model predicts {kind!r}; fine-tuning supports epsilon and v_prediction models.")


def denoising_loss(unet, zt, t, text, target, reduce: bool = True) -> torch.Tensor:
    pred = unet(zt, t, text).sample
    loss = F.mse_loss(pred.float(), target.float(), reduction="none").mean(dim=(1, 2, 3))
    return loss.mean() if reduce else loss


def training_scheduler(pipe):
    """The DDPM noise schedule the base model was trained with (its scheduler config, any sampler)."""
    from diffusers import DDPMScheduler

    return DDPMScheduler.from_config(pipe.scheduler.config)


def accelerator(mixed_precision: str, gradient_accumulation: int, device: str):
    """An `accelerate.Accelerator`: one process, or one per GPU under `accelerate launch`.

    auto precision: bf16 where the GPU has it, else fp16; none on the CPU (no speed-up there).
    """
    from accelerate import Accelerator

    picked = pick_device(device)
    cpu = picked.type != "cuda"
    if mixed_precision == "auto":
        mixed_precision = {None: "no", torch.bfloat16: "bf16", torch.float16: "fp16"}[autocast_dtype(picked)]
    if cpu and mixed_precision == "fp16":
        raise DiffaugError("mixed_precision=fp16 needs a CUDA GPU; use auto, no or bf16 on this machine.")
    return Accelerator(mixed_precision=mixed_precision, gradient_accumulation_steps=gradient_accumulation, cpu=cpu)


def adamw(parameters, lr: float, use_8bit: bool, device: torch.device, weight_decay: float = 1e-2):
    """AdamW, or bitsandbytes' 8-bit AdamW (a quarter of the optimizer memory) on CUDA."""
    if use_8bit:
        if device.type != "cuda":
            raise DiffaugError("use_8bit_adam=true needs a CUDA GPU and bitsandbytes; set it to false on this machine.")
        try:
            import bitsandbytes as bnb
        except ImportError:
            raise DiffaugError(
                "use_8bit_adam=true needs bitsandbytes: `pip install bitsandbytes`, or set it to false."
            ) from None
        return bnb.optim.AdamW8bit(parameters, lr=lr, weight_decay=weight_decay)
    return torch.optim.AdamW(parameters, lr=lr, weight_decay=weight_decay)


def check_8bit_adam(use_8bit: bool, device: str) -> None:
    """Fail before any work if 8-bit Adam cannot run here."""
    if use_8bit:
        adamw([torch.nn.Parameter(torch.zeros(1))], 1e-3, True, pick_device(device))


def scaled_lr(lr: float, scale: bool, batch_size: int, accumulation: int, processes: int) -> float:
    return lr * batch_size * accumulation * processes if scale else lr


def encode_prompts(pipe, prompts: list[str], device: Optional[torch.device] = None, text_encoder=None) -> torch.Tensor:
    """Text-encoder hidden states for `prompts`, tokenised exactly as the pipeline does."""
    ids = pipe.tokenizer(
        prompts, padding="max_length", max_length=pipe.tokenizer.model_max_length, truncation=True, return_tensors="pt"
    ).input_ids
    return (text_encoder or pipe.text_encoder)(ids.to(device or pipe.text_encoder.device))[0]


def n_trainable(*models) -> int:
    return sum(p.numel() for m in models for p in m.parameters() if p.requires_grad)


def class_label(label: str, classes: tuple[str, ...]) -> str:
    if label not in classes:
        raise DiffaugError(f"class {label!r} is not in params.yaml's classes ({', '.join(classes)}).")
    return label
