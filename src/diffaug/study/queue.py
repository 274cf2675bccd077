"""The DVC-queue executor of the study (`diffaug study`, study.executor: queue): bring the pipeline
up to date, queue every sweep of the grid with `dvc exp run --queue`, start `study.jobs` workers, wait
until every experiment finished, then run `after` (the report). Experiments that ran before are
restored from DVC's run-cache instead of recomputed.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Optional

from diffaug.errors import DiffaugError
from diffaug.study.dvc import dvc, failure, tool_failed, up_to_date
from diffaug.study.grid import Sweep

POLL_SECONDS = 5.0


def enqueue(sweeps: list[Sweep]) -> list[str]:
    """Queue every sweep; return the names DVC gave the experiments."""
    names = []
    for sweep in sweeps:
        names += re.findall(r"Queued experiment '([^']+)'", dvc("exp", "run", "--queue", *sweep.args()))
    return names


def statuses(text: str) -> tuple[dict[str, tuple[str, str]], int]:
    """From `dvc queue status`: experiment name -> (task id, status), and the number of workers."""
    out, workers = {}, 0
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[-1] in ("Queued", "Running", "Success", "Failed"):
            out[parts[1]] = (parts[0], parts[-1])
        m = re.match(r"Worker status: (\d+) active, (\d+) idle", line.strip())
        if m:
            workers = int(m.group(1)) + int(m.group(2))
    return out, workers


def wait(names: list[str], poll: float = POLL_SECONDS, patience: int = 3) -> dict[str, tuple[str, str]]:
    """Block until none of `names` is queued or running; print progress when it changes.

    Stops with an error if the queue has had no worker for `patience` polls while work is left
    (a worker killed by the system, say): waiting would never end.
    """
    last, idle = None, 0
    while True:
        now, workers = statuses(dvc("queue", "status"))
        ours = {n: now.get(n, ("?", "Unknown")) for n in names}  # a task missing from the list: not waited on
        done = sum(s not in ("Queued", "Running") for _, s in ours.values())
        if done != last:
            print(f"study: {done} of {len(names)} experiments finished", file=sys.stderr)
            last = done
        if done == len(names):
            return ours
        idle = idle + 1 if workers == 0 else 0
        if idle >= patience:
            raise DiffaugError(
                f"the DVC queue has no worker left with {len(names) - done} experiments to go; "
                "run `dvc queue start` and then this command again."
            )
        time.sleep(poll)


def worker_env(jobs: int, env: Optional[dict] = None) -> dict:
    """The environment of the queue's workers: with several experiments at once on a machine without a
    GPU, each gets its share of the cores (OMP_NUM_THREADS, which torch reads), so that they overlap
    DVC's single-threaded work per experiment instead of fighting over the same cores."""
    env = dict(os.environ if env is None else env)
    if jobs > 1 and "OMP_NUM_THREADS" not in env:
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // jobs))
    return env


def start_workers(jobs: int) -> None:
    # Output to a file, not a pipe: the workers DVC spawns inherit it, and reading a pipe would wait
    # until the last of them leaves, i.e. until the whole queue has run.
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.run(
            ["dvc", "queue", "start", "-j", str(jobs)], stdout=out, stderr=subprocess.STDOUT, env=worker_env(jobs)
        )
        out.seek(0)
        text = out.read()
    if proc.returncode:
        raise tool_failed(["dvc", "queue", "start", "-j", str(jobs)], text)


def run_queue(sweeps: list[Sweep], count: int, jobs: int, after: Callable[[], None]) -> None:
    """Run the `count` experiments of `sweeps` in DVC's queue, `jobs` at a time, then `after` (the report)."""
    up_to_date()
    names = enqueue(sweeps)
    print(f"study: queued {len(names)} of {count} experiments; running {jobs} at a time", file=sys.stderr)
    start_workers(jobs)
    try:
        result = wait(names)
    except BaseException:
        # Interrupted: stop the workers. Not after a normal end: DVC's workers leave by themselves once
        # idle, and a `queue stop` that no worker receives waits in the broker and stops the next
        # `dvc queue start` after its first experiment.
        dvc("queue", "stop", check=False)
        raise
    failed = [(name, f"`dvc queue logs {task}`") for name, (task, s) in result.items() if s == "Failed"]
    after()
    if failed:
        raise failure(failed, len(names))
    print(f"study: {len(names)} experiments succeeded; see `dvc exp show`", file=sys.stderr)
