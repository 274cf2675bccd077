"""The whole study as one command: queue the grid as DVC experiments, run them, write the report.

    diffaug study [--sources vanilla,dreambooth] [--p 0.0,0.5,1.0] [--regimes scratch=200,finetune=20]
                  [--budget steps|epochs] [--seeds 0,1,2] [--jobs 2] [--no-randaugment]
                  [--real-per-class 2,5,10] [--add-per-class 5] [--executor queue|ray] [--address ADDR]
                  [--git-remote URL] [--dvc-remote URL]

Defaults come from the `study` section of params.yaml. The grid:
- `mix.source=none` at every p below 1.0: the paper's "only original" baseline, (1-p) of the real
  images alone (at p = 1.0 nothing would be left to train on);
- each synthetic source at every p above 0.0 (at p = 0.0 every source trains on the same real
  images as the baseline, so that run is queued once, as `none`);
- the RandAugment baseline (`mix.source=none`, p = 0, `train.augment=randaugment`) unless
  `study.randaugment` is false or `--no-randaugment` is given;
- the real-image yardstick: "only original" with k real images a class (p = 0, `mix.n_per_class=k`)
  for each k of `study.real_per_class`, and at each k of `study.add_per_class` every source adding k
  synthetic images to the k real ones (`mix.mode=add`, p = 1), and so does every real source
  (`sources.real`: k extra real images, the control): the report's exchange rate;
- all of it per regime (with its budget: train.steps, equal for every mix, or the paper's train.epochs,
  as study.budget or --budget says) and per seed (train.seed and mix.seed).
Experiments that ran before are restored from DVC's run-cache instead of recomputed. With
`--executor ray` (study.executor) the experiments run as Ray tasks instead of in DVC's queue:
see diffaug.study.ray.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

import yaml

from diffaug.cli import run
from diffaug.errors import DiffaugError
from diffaug.params import load_params, parse_params
from diffaug.study.dvc import dvc, failure, tool_failed, up_to_date
from diffaug.study.grid import Sweep, check_points, grid, with_sets

POLL_SECONDS = 5.0


def report(skip: bool) -> None:
    if not skip:
        from diffaug.study.report.command import main as write_report  # matplotlib: only when asked

        write_report([])


def budget_key(params) -> str:
    """The param the regimes' budgets set: train.steps (equal for every mix) or train.epochs."""
    unit = params.study.budget or ("steps" if params.train.steps else "epochs")
    if unit == "steps" and not params.train.steps and None in params.study.regimes.values():
        raise DiffaugError(
            "the study's budget is steps but train.steps is null; give every regime its steps, "
            "e.g. --regimes scratch=2400,finetune=240,frozen=240."
        )
    return f"train.{unit}"


def queue(sweeps: list[Sweep]) -> list[str]:
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


def main(argv: Optional[list[str]] = None) -> None:
    raw = yaml.safe_load(Path("params.yaml").read_text()) if Path("params.yaml").is_file() else None
    study = parse_params(raw).study if raw is not None else load_params().study
    ap = argparse.ArgumentParser(prog="diffaug study", description=__doc__.split("\n")[0])
    ap.add_argument("--sources", help="synthetic sources, comma-separated (default: study.sources)")
    ap.add_argument("--p", help="proportions, comma-separated, e.g. 0.0,0.5,1.0 (default: study.p)")
    ap.add_argument("--regimes", help="regime=budget, comma-separated, e.g. scratch=200,frozen=20")
    ap.add_argument("--budget", choices=("steps", "epochs"), help="the regimes' unit (default: study.budget)")
    ap.add_argument("--seeds", help="seeds, comma-separated (default: study.seeds)")
    ap.add_argument("--jobs", type=int, default=study.jobs, help="experiments at once (default: study.jobs)")
    ap.add_argument(
        "--randaugment",
        action=argparse.BooleanOptionalAction,
        default=study.randaugment,
        help="queue the RandAugment baseline (default: study.randaugment)",
    )
    ap.add_argument(
        "--real-per-class", help="yardstick sizes k, comma-separated; '' for none (default: study.real_per_class)"
    )
    ap.add_argument(
        "--add-per-class",
        help="few-shot k (k real + k synthetic a class), comma-separated; '' for none (default: study.add_per_class)",
    )
    ap.add_argument(
        "--executor",
        choices=("queue", "ray"),
        default=study.executor,
        help="queue: DVC's queue here; ray: one Ray task per experiment (default: study.executor)",
    )
    ap.add_argument("--address", help="ray: the Ray cluster to join (default: start a local Ray)")
    ap.add_argument(
        "--git-remote",
        help="ray: git remote (name or URL) the workers clone and push experiments "
        "to, for machines that share no disk (default: this repository)",
    )
    ap.add_argument(
        "--dvc-remote",
        help="ray: DVC remote (URL or path) the workers pull the shared stages from "
        "and push to (default: share this repository's DVC cache)",
    )
    ap.add_argument("--dry-run", action="store_true", help="print the dvc commands, queue nothing")
    ap.add_argument("--no-report", action="store_true", help="do not run diffaug report at the end")
    a = ap.parse_args(argv)
    # The options override the study section and go through the same checks as params.yaml's values.
    options = {"jobs": a.jobs, "randaugment": a.randaugment, "executor": a.executor}
    if a.sources:
        options["sources"] = a.sources.split(",")
    if a.p:
        options["p"] = [float(x) for x in a.p.split(",")]
    if a.regimes:
        options["regimes"] = {r: int(e) if e else None for r, _, e in (x.partition("=") for x in a.regimes.split(","))}
    if a.seeds:
        options["seeds"] = [int(x) for x in a.seeds.split(",")]
    if a.budget:
        options["budget"] = a.budget
    for key in ("real_per_class", "add_per_class"):
        if getattr(a, key) is not None:
            options[key] = [int(x) for x in getattr(a, key).split(",") if x.strip()]
    raw = with_sets(raw, {f"study.{k}": v for k, v in options.items()})
    params = parse_params(raw)
    study = params.study
    sweeps = grid(
        tuple(study.sources),
        tuple(study.p),
        tuple(study.regimes.items()),
        tuple(study.seeds),
        study.randaugment,
        tuple(study.real_per_class),
        tuple(study.add_per_class),
        budget_key(params),
        tuple(name for name in params.sources.real if name not in study.sources),
    )
    count = check_points(raw, sweeps)
    if study.executor != "ray" and (a.address or a.git_remote or a.dvc_remote):
        raise DiffaugError(
            "--address, --git-remote and --dvc-remote are options of the Ray executor; add --executor ray."
        )
    if study.executor == "ray" and not a.dry_run:
        from diffaug.study.ray import run_study  # only this executor needs ray installed

        run_study(
            raw,
            study,
            sweeps,
            address=a.address,
            git_remote=a.git_remote,
            dvc_remote=a.dvc_remote,
            after=lambda: report(a.no_report),
        )
        return
    if a.dry_run:
        for sweep in sweeps:
            print("dvc exp run --queue " + " ".join(sweep.args()))
        return
    up_to_date()
    names = queue(sweeps)
    print(f"study: queued {len(names)} of {count} experiments; running {study.jobs} at a time", file=sys.stderr)
    start_workers(study.jobs)
    try:
        result = wait(names)
    except BaseException:
        # Interrupted: stop the workers. Not after a normal end: DVC's workers leave by themselves once
        # idle, and a `queue stop` that no worker receives waits in the broker and stops the next
        # `dvc queue start` after its first experiment.
        dvc("queue", "stop", check=False)
        raise
    failed = [(name, f"`dvc queue logs {task}`") for name, (task, s) in result.items() if s == "Failed"]
    report(a.no_report)
    if failed:
        raise failure(failed, len(names))
    print(f"study: {len(names)} experiments succeeded; see `dvc exp show`", file=sys.stderr)


if __name__ == "__main__":
    run(main)
