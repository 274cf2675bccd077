"""Wall time of 4 grid points of the built-in pipeline: DVC's queue (1 job) against Ray with 1 and 2
workers, in a scratch clone whose shared stages come from a copy of a finished repository's cache.

    PYTHONPATH=src nice -n 19 python benchmarks/ray_study.py /path/to/repo/with/dvc/repro/done /tmp/ray-bench

The points: `none` at p 0 and 0.5, vanilla at 0.5 and 1.0, scratch for `--epochs` epochs. Each
executor gets its own seed, so no run restores another's from the run-cache. The difference per
experiment between Ray with 1 worker and the queue is the Ray executor's overhead (clone, checkout,
exp push and pull, Ray's scheduling); the queue's includes its own 5 s polling.
"""

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import ray
import yaml

from diffaug.study.command import main as study

HERE = Path(__file__).resolve().parents[1]


def sh(*cmd, cwd):
    subprocess.run(cmd, cwd=cwd, check=True, capture_output=True)


def setup(done: Path, scratch: Path) -> Path:
    """A clone of this worktree's commit, its cache a copy of `done`'s (nothing is written there)."""
    repo = scratch / "repo"
    if repo.exists():
        return repo
    sh("git", "clone", "-q", str(HERE), str(repo), cwd=scratch)
    sh("dvc", "cache", "dir", "--local", str(scratch / "cache"), cwd=repo)
    # The outputs dvc.lock records, copied from `done`'s workspace (its cache may lack some) and
    # committed to the scratch cache: `dvc status` then finds the pipeline up to date.
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    for out in {o["path"] for stage in lock["stages"].values() for o in stage.get("outs", [])}:
        copy = shutil.copytree if (done / out).is_dir() else shutil.copy2
        (repo / out).parent.mkdir(parents=True, exist_ok=True)
        copy(done / out, repo / out)
    sh("dvc", "commit", "-q", "-f", cwd=repo)
    return repo


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("done", type=Path, help="a repository of the built-in default after `dvc repro`")
    ap.add_argument("scratch", type=Path)
    ap.add_argument("--epochs", type=int, default=2)
    a = ap.parse_args()
    a.scratch.mkdir(parents=True, exist_ok=True)
    repo = setup(a.done.resolve(), a.scratch.resolve())
    for key in ("GIT_AUTHOR_NAME", "GIT_COMMITTER_NAME"):
        os.environ.setdefault(key, "benchmark")
    for key in ("GIT_AUTHOR_EMAIL", "GIT_COMMITTER_EMAIL"):
        os.environ.setdefault(key, "benchmark@example.com")
    os.chdir(repo)
    grid = [
        "--sources",
        "vanilla",
        "--p",
        "0.0,0.5,1.0",
        "--no-randaugment",
        "--regimes",
        f"scratch={a.epochs}",
        "--no-report",
    ]
    study([*grid, "--dry-run"])
    subprocess.run(["dvc", "repro", "-q"], check=True)  # the shared stages are in the cache: only `check` runs
    times = {}
    for seed, (name, workers) in enumerate((("queue, 1 job", None), ("ray, 1 worker", 1), ("ray, 2 workers", 2))):
        start = time.perf_counter()
        if workers is None:
            study([*grid, "--seeds", str(seed), "--executor", "queue", "--jobs", "1"])
        else:
            ray.init(num_cpus=workers, include_dashboard=False, logging_level="WARNING")
            up = time.perf_counter() - start
            study([*grid, "--seeds", str(seed), "--executor", "ray"])
            ray.shutdown()
            name += f" (Ray start {up:.0f} s)"
        times[name] = time.perf_counter() - start
        print(f"{name}: {times[name]:.0f} s for 4 experiments", file=sys.stderr, flush=True)
    queue, one = list(times.values())[:2]
    print("\n".join(f"{k}: {v:.0f} s, {v / 4:.0f} s per experiment" for k, v in times.items()))
    print(f"Ray's overhead per experiment against the queue (1 worker): {(one - queue) / 4:.0f} s")


if __name__ == "__main__":
    main()
