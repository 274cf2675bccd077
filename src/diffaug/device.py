"""Device and precision choice, shared by every stage that runs a network."""

from __future__ import annotations

import platform
import time
from typing import Optional

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


def use_threads(threads: Optional[int]) -> None:
    """Fix torch's CPU threads: CPU float results depend on their number, so a run's numbers must not
    depend on what else shares the machine (the queue gives each worker a share of the cores)."""
    if threads is not None:
        torch.set_num_threads(threads)


def cpu_name() -> str:
    """The CPU model, as /proc/cpuinfo names it where there is one."""
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        if names:
            return names[0]
    except OSError:
        pass
    return platform.processor() or platform.machine()


def host(device: torch.device) -> dict:
    """What a CPU result depends on besides params and seeds: recorded beside it, so runs that differ
    in it are never pooled as seeds of one setting (the study report splits them)."""
    cpu = device.type == "cpu"
    return {
        "threads": torch.get_num_threads(),
        "cpu": cpu_name(),
        "torch": torch.__version__,
        "gpu": None if cpu else device_name(device),
    }


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """Mixed precision where it pays: bf16 on GPUs that have it, else fp16; none on the CPU."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def device_name(device: torch.device) -> str:
    """The GPU's model name on CUDA (what a cost record needs), else `cpu` or `mps`."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else device.type


class Meter:
    """Measures a run from its creation: wall time, throughput and peak GPU memory, what a stage
    records in its metrics (and `diffaug cost` adds up)."""

    def __init__(self, device: torch.device):
        self.device = device
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        self.start = time.perf_counter()

    def reading(self, done: int, unit: str) -> dict:
        """`done` units of work (steps, images) since the start: seconds, <unit>_per_second, device, peak GPU GB."""
        seconds = time.perf_counter() - self.start
        cuda = self.device.type == "cuda"
        return {
            "seconds": round(seconds, 1),
            f"{unit}_per_second": round(done / seconds, 3) if done else None,
            "device": device_name(self.device),
            "peak_memory_gb": round(torch.cuda.max_memory_allocated(self.device) / 2**30, 2) if cuda else None,
        }
