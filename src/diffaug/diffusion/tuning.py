"""The fine-tuning loop DreamBooth and Textual Inversion share, with its checkpoints: a killed run
resumes from the last one and ends with the bytes an uninterrupted run would.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch

from diffaug.checkpoint import Checkpoints, checkpoint_key, resumed, rng_states, set_rng_states
from diffaug.device import device_name, pick_device
from diffaug.progress import bar


def batches(n: int, batch_size: int, count: int, gen: torch.Generator) -> Iterator[torch.Tensor]:
    """Indices of `count` seeded random batches (with replacement across steps: 5 images, 400 steps)."""
    for _ in range(count):
        yield torch.randint(0, n, (batch_size,), generator=gen)


def trainable_weights(**modules: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    """The parameters that learn, by `module.name`, in the order of `modules` and of their parameters."""
    return {f"{m}.{k}": p for m, module in modules.items() for k, p in module.named_parameters() if p.requires_grad}


@dataclass
class Tuning:
    """What a fine-tuning run's remaining steps depend on: its trainable weights, the optimizer, accelerate's
    fp16 loss scale, the RNGs the batches draw from, and the losses so far. A checkpoint is a snapshot of it."""

    acc: Any  # accelerate.Accelerator
    opt: Any  # its wrapped optimizer
    gen: torch.Generator
    weights: dict[str, torch.nn.Parameter]
    step: int = 0
    losses: list[float] = field(default_factory=list)

    def snapshot(self) -> dict:
        """Every process's RNG states (collected: a collective call), the rest once (the same in every process)."""
        from accelerate.utils import gather_object

        scaler = self.acc.scaler
        return {
            "weights": {k: p.detach() for k, p in self.weights.items()},
            "optimizer": self.opt.state_dict(),
            "scaler": scaler.state_dict() if scaler else None,
            "rng": gather_object([rng_states(self.gen)]),
            "step": self.step,
            "losses": self.losses,
        }

    def restore(self, saved: dict) -> None:
        with torch.no_grad():
            for k, p in self.weights.items():
                p.copy_(saved["weights"][k])
        self.opt.load_state_dict(saved["optimizer"])
        if self.acc.scaler:
            self.acc.scaler.load_state_dict(saved["scaler"])
        set_rng_states(saved["rng"][self.acc.process_index], self.gen)
        self.step, self.losses = saved["step"], saved["losses"]


def optimise(
    tuning: Tuning,
    model,
    batch_step: Callable[[torch.Tensor], float],
    n: int,
    params,
    checkpoints: Optional[Checkpoints],
    desc: str,
) -> int:
    """`params.steps` optimizer steps of `gradient_accumulation` calls of `batch_step(indices into n)` each
    (it back-propagates, steps `tuning.opt` and returns its loss), resuming from `checkpoints` where a killed
    run left one and saving there every `checkpoint_every` steps. Returns the steps this call ran."""
    acc = tuning.acc
    saved = checkpoints.load() if checkpoints else None
    if saved:
        tuning.restore(saved)
        if acc.is_main_process:
            resumed(tuning.step, params.steps, desc)
    start = tuning.step
    with bar(params.steps, desc, "step", initial=start, disable=not acc.is_local_main_process) as progress:
        while tuning.step < params.steps:
            for idx in batches(n, params.batch_size, params.gradient_accumulation, tuning.gen):
                with acc.accumulate(model):
                    tuning.losses.append(batch_step(idx))
            tuning.step += 1
            show_step(progress, tuning.losses)
            if checkpoints and checkpoints.due(tuning.step, params.steps):
                state = tuning.snapshot()
                if acc.is_main_process:
                    checkpoints.save(state)
    return tuning.step - start


def show_step(progress, losses: list[float]) -> None:
    """Advance the bar by an optimizer step, with the mean loss of the last ten batches: one batch's loss
    jumps with its random timesteps."""
    progress.update()
    tail = losses[-10:]
    progress.set_postfix(loss=f"{sum(tail) / len(tail):.4f}", refresh=False)


def final_loss(losses: list[float]) -> float:
    """The mean loss of the last tenth of the batches: what training ended at."""
    tail = losses[-max(1, len(losses) // 10) :]
    return sum(tail) / len(tail)


def finetune_checkpoints(method: str, label: str, params, files: list[Path], model: str) -> Checkpoints:
    """Where one class's fine-tuning checkpoints, keyed by everything that sets the weights it ends with:
    the params section, the instance images, the base model's weights, the device and the process count."""
    processes = int(os.environ.get("WORLD_SIZE", 1))  # as `accelerate launch` sets it
    tag = json.dumps([label, model, device_name(pick_device(params.device)), processes])
    key = checkpoint_key(params.model_dump(), files, tag)
    return Checkpoints(f"{method}/{label}", key, params.checkpoint_every)
