"""Each stage process imports what its work needs and no more: a stage process starts once per stage and
experiment, so an import it does not need is paid on every run (torch about 3 s here, diffusers' pipelines
about 6 s). `python benchmarks/overhead.py` measures the start-up of every stage; this holds the line.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

# Stages that count, copy and check files: no deep-learning library at all.
NO_TORCH = ["check", "mix", "split", "scrape", "prompts", "real"]
# Stages that train, score or measure with the classifier or feature networks: no diffusion pipeline.
NO_DIFFUSERS = ["train", "evaluate", "reference", "measure", "fid_reference", "filter", "clip_zero_shot"]


def imported(stages: list[str]) -> set[str]:
    """The top-level packages loaded by importing these stage modules in one fresh process."""
    code = (
        "import json, sys\n"
        + "".join(f"import diffaug.stages.{s}\n" for s in stages)
        + "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    out = subprocess.run([sys.executable, "-c", code], env={"PYTHONPATH": str(SRC)}, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return set(json.loads(out.stdout))


@pytest.mark.parametrize(
    "stages, absent",
    [
        (NO_TORCH, {"torch", "torchvision", "diffusers", "transformers", "accelerate", "peft"}),
        (NO_DIFFUSERS, {"diffusers", "transformers", "accelerate", "peft"}),
    ],
    ids=["no_torch", "no_diffusers"],
)
def test_stage_modules_leave_out_libraries_they_do_not_use(stages, absent):
    assert imported(stages) & absent == set()
