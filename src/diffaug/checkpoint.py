"""Checkpoints of long training loops, so a killed run resumes instead of starting over.

They live in the cache, outside the DVC outputs (`dvc exp run --queue` workers share it), keyed by
a hash of everything that determines the result: the stage's params section (less the checkpoint
interval, which changes nothing) and the hashes of its inputs. A checkpoint holds the whole state
of the loop, every RNG included, so a resumed run ends with the bytes an uninterrupted one would.
Written atomically, read with `weights_only=True` (tensors and plain containers, no code), deleted
once the stage has its result.

Each run (a stage, or one class of a per-class stage) has a folder of its own. A run keeps only its
newest checkpoint, and removes what other keys left there: a killed run whose params or inputs have
changed since would never resume. A running run holds a lock on its key, so a run beside it (another
queued experiment) never deletes its checkpoint.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from pathlib import Path
from typing import Optional

import torch

from diffaug.io import cache_dir, clean_leftovers, sha256_file, temp_path


def checkpoint_key(section: dict, inputs: list[str | Path], tag: str = "") -> str:
    """A hash of a params section (without `checkpoint_every`) and of the input files' contents."""
    params = {k: v for k, v in section.items() if k != "checkpoint_every"}
    files = [sha256_file(f) for f in inputs]
    blob = json.dumps({"tag": tag, "params": params, "inputs": files}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


class Checkpoints:
    """One run's checkpoint file: saved every `every` steps (0: never), loaded on a rerun, cleared at the end.

    `kind` names the run's folder ("train", "dreambooth/<class>"). A multi-GPU run saves one file, from
    its main process, holding every process's RNG states: one file cannot be half of a step ahead.
    """

    def __init__(self, kind: str, key: str, every: int):
        self.every, self.key = every, key
        self.folder = cache_dir("checkpoints", kind)
        self.path = self.folder / f"{key}.pt"
        self._lock: Optional[int] = None

    def due(self, step: int, total: int) -> bool:
        """After `step` of `total`: the last step needs none, the stage saves its result right after."""
        return bool(self.every) and step % self.every == 0 and step < total

    def save(self, state: dict) -> None:
        tmp = temp_path(self.path)
        torch.save(state, tmp)
        tmp.replace(self.path)  # atomic: a kill mid-write leaves the previous checkpoint, the only one kept

    def load(self) -> Optional[dict]:
        """Mark this key as running, remove other keys' leftovers, and return the checkpoint to resume from."""
        if self._lock is None:
            self._lock = _lock(self.folder / f"{self.key}.lock", fcntl.LOCK_SH)  # a run's processes share it
        self.prune()
        if not self.every or not self.path.exists():
            return None
        return torch.load(self.path, weights_only=True, map_location="cpu")

    def prune(self) -> None:
        """Delete the checkpoints of the folder's other keys whose run is over (nobody holds their lock)."""
        clean_leftovers(self.folder)  # checkpoints a kill interrupted mid-write
        keys = {f.stem for f in [*self.folder.glob("*.pt"), *self.folder.glob("*.lock")]}
        for key in sorted(keys - {self.key}):
            lock = _lock(self.folder / f"{key}.lock", fcntl.LOCK_EX | fcntl.LOCK_NB)
            if lock is not None:
                _remove_key(self.folder, key, lock)

    def clear(self) -> None:
        """The result is saved: delete this run's checkpoint (and its lock, unless a run of the same key is on)."""
        self.path.unlink(missing_ok=True)
        if self._lock is not None:
            try:  # a POSIX lock converts atomically: on failure this run still holds its shared lock
                fcntl.lockf(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                _remove_key(self.folder, self.key, self._lock)
            except OSError:
                os.close(self._lock)
            self._lock = None


def _lock(path: Path, how: int) -> Optional[int]:
    """An open descriptor holding a POSIX lock on `path` (created if missing); None if `how` is non-blocking
    and another process holds it. The kernel drops it when the process dies, however it dies; a process
    never conflicts with itself, so a run that died in this process (a test) counts as over."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.lockf(fd, how)
        except OSError:  # EAGAIN or EACCES: taken
            os.close(fd)
            return None
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)  # another run removed the file while this one waited: lock the new one


def _remove_key(folder: Path, key: str, lock: int) -> None:
    """Delete a key's checkpoint and its lock file, under its exclusive lock."""
    (folder / f"{key}.pt").unlink(missing_ok=True)
    (folder / f"{key}.lock").unlink(missing_ok=True)
    os.close(lock)


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
