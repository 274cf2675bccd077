"""The git and dvc commands of both study executors: one runner (`tool`, and its `dvc` and `git`),
the failure sentences, and the pipeline brought up to date once before any experiment."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Optional

from diffaug.errors import DiffaugError


def run_tool(args: list[str], cwd: Optional[Path] = None) -> subprocess.CompletedProcess:
    """Run git or dvc, output captured; a missing program is the user's to install."""
    try:
        return subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    except FileNotFoundError:
        raise DiffaugError(
            f"the {args[0]} command is not on PATH; install git and the project's requirements.txt first."
        ) from None


def tool_failed(args: list[str], output: str) -> DiffaugError:
    """The error for a git or dvc command that failed: the command and its last line of output."""
    last = (output.strip() or "no output").splitlines()[-1]
    return DiffaugError(f"`{' '.join(args)}` failed ({last}); fix that and run the study again.")


def tool(program: str, *args: str, check: bool = True, cwd: Optional[Path] = None) -> str:
    """`program args`'s output (stdout, then stderr); with `check`, a failure is an error."""
    proc = run_tool([program, *args], cwd)
    if check and proc.returncode != 0:
        raise tool_failed([program, *args], proc.stderr.strip() or proc.stdout)
    return proc.stdout + proc.stderr


def dvc(*args: str, check: bool = True, cwd: Optional[Path] = None) -> str:
    return tool("dvc", *args, check=check, cwd=cwd)


def git(*args: str, cwd: Optional[Path] = None) -> str:
    return tool("git", *args, cwd=cwd).strip()


def failure(failed: list[tuple[str, str]], total: int) -> DiffaugError:
    """The error for failed experiments, (name, where its log is) each, sorted by name."""
    name, log = sorted(failed)[0]
    return DiffaugError(
        f"{len(failed)} of {total} experiments failed, first {name}; read {log}, fix the cause and run the study again."
    )


def up_to_date() -> None:
    """Run the pipeline once at the workspace's params, so every experiment restores the shared stages
    (data, base model, fine-tuning, generation, FID) from the DVC cache instead of recomputing them."""
    if subprocess.run(["dvc", "status", "--quiet"], capture_output=True).returncode:  # 1: not up to date
        print(
            "study: the pipeline is not up to date; running `dvc repro` once, so the experiments share its outputs",
            file=sys.stderr,
        )
        proc = subprocess.run(["dvc", "repro"])
        if proc.returncode:
            raise DiffaugError(
                "`dvc repro` failed at the workspace's params; fix that first (its output is above), "
                "then run the study again."
            )
