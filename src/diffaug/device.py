"""Device and precision choice, shared by every stage that runs a network."""
from __future__ import annotations

import torch

from diffaug.errors import DiffaugError


def pick_device(name: str = "auto") -> torch.device:
    """`auto` takes CUDA, then Apple's MPS, then the CPU; a named device must exist."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DiffaugError(f"device {name} was asked for but CUDA is not available here; use auto or cpu.")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise DiffaugError(f"device {name} does not exist (this machine has {torch.cuda.device_count()} GPUs).")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise DiffaugError(f"device {name} was asked for but MPS is not available here; use auto or cpu.")
    return device


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """Mixed precision where it pays: bf16 on GPUs that have it, else fp16; none on the CPU."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
