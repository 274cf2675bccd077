"""Checkpoints of long training loops, so a killed run resumes instead of starting over.

They live in the cache, outside the DVC outputs (`dvc exp run --queue` workers share it), keyed by
a hash of everything that determines the result: the stage's params section (less the checkpoint
interval, which changes nothing) and the hashes of its inputs. A checkpoint holds the whole state
of the loop, every RNG included, so a resumed run ends with the bytes an uninterrupted one would.
Written atomically, read with `weights_only=True` (tensors and plain containers, no code), deleted
once the stage has its result.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Optional

import torch

from diffaug.io import cache_dir, sha256_file, temp_path


def checkpoint_key(section: dict, inputs: list[str | Path], tag: str = "") -> str:
    """A hash of a params section (without `checkpoint_every`) and of the input files' contents."""
    params = {k: v for k, v in section.items() if k != "checkpoint_every"}
    files = [sha256_file(f) for f in inputs]
    blob = json.dumps({"tag": tag, "params": params, "inputs": files}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


class Checkpoints:
    """One run's checkpoint file: saved every `every` steps (0: never), loaded on a rerun, cleared at the end."""

    def __init__(self, kind: str, key: str, every: int, process: int = 0):
        self.every = every
        self.path = cache_dir("checkpoints", kind) / f"{key}-{process}.pt"

    def due(self, step: int, total: int) -> bool:
        """After `step` of `total`: the last step needs none, the stage saves its result right after."""
        return bool(self.every) and step % self.every == 0 and step < total

    def save(self, state: dict) -> None:
        tmp = temp_path(self.path)
        torch.save(state, tmp)
        tmp.replace(self.path)  # atomic: a kill mid-write leaves the previous checkpoint

    def load(self) -> Optional[dict]:
        if not self.every or not self.path.exists():
            return None
        return torch.load(self.path, weights_only=True, map_location="cpu")

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


def rng_states(*generators: torch.Generator) -> dict:
    """torch's global RNG (CPU and CUDA) and the given generators, as tensors."""
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "generators": [g.get_state() for g in generators],
    }


def set_rng_states(states: dict, *generators: torch.Generator) -> None:
    torch.set_rng_state(states["torch"])
    if states["cuda"]:
        torch.cuda.set_rng_state_all(states["cuda"])
    for g, s in zip(generators, states["generators"], strict=True):
        g.set_state(s)


def resumed(step: int, total: int, what: str) -> None:
    print(f"{what}: resumed at step {step} of {total} from a checkpoint")
