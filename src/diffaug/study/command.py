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
Experiments that ran before are restored from DVC's run-cache instead of recomputed. The executor
runs them: DVC's queue (diffaug.study.queue), or with `--executor ray` (study.executor) Ray tasks
(diffaug.study.ray).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional

import yaml

from diffaug.cli import run
from diffaug.errors import DiffaugError
from diffaug.params import Study, load_params, parse_params
from diffaug.study.grid import check_points, sweeps_of, with_sets
from diffaug.study.queue import run_queue

RAY_OPTIONS = ("address", "git_remote", "dvc_remote")


def grid_options(ap: argparse.ArgumentParser, study: Study) -> None:
    """The options that override the study section's grid (its values are the defaults)."""
    ap.add_argument("--sources", help="synthetic sources, comma-separated (default: study.sources)")
    ap.add_argument("--p", help="proportions, comma-separated, e.g. 0.0,0.5,1.0 (default: study.p)")
    ap.add_argument("--regimes", help="regime=budget, comma-separated, e.g. scratch=200,frozen=20")
    ap.add_argument("--budget", choices=("steps", "epochs"), help="the regimes' unit (default: study.budget)")
    ap.add_argument("--seeds", help="seeds, comma-separated (default: study.seeds)")
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


def executor_options(ap: argparse.ArgumentParser, study: Study) -> None:
    """The options of how the experiments run, and of what happens before and after."""
    ap.add_argument("--jobs", type=int, default=study.jobs, help="experiments at once (default: study.jobs)")
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


def overrides_of(a: argparse.Namespace) -> dict[str, object]:
    """The study section's keys the options set: they go through the same checks as params.yaml's values."""
    out = {"jobs": a.jobs, "randaugment": a.randaugment, "executor": a.executor}
    if a.sources:
        out["sources"] = a.sources.split(",")
    if a.p:
        out["p"] = [float(x) for x in a.p.split(",")]
    if a.regimes:
        out["regimes"] = {r: int(e) if e else None for r, _, e in (x.partition("=") for x in a.regimes.split(","))}
    if a.seeds:
        out["seeds"] = [int(x) for x in a.seeds.split(",")]
    if a.budget:
        out["budget"] = a.budget
    for key in ("real_per_class", "add_per_class"):
        if getattr(a, key) is not None:
            out[key] = [int(x) for x in getattr(a, key).split(",") if x.strip()]
    return {f"study.{k}": v for k, v in out.items()}


def run_report() -> None:
    from diffaug.study.report.command import main  # matplotlib: only when asked

    main([])


def main(argv: Optional[list[str]] = None) -> None:
    load_params()  # a missing or invalid params.yaml stops here, in one sentence
    raw = yaml.safe_load(Path("params.yaml").read_text())
    ap = argparse.ArgumentParser(prog="diffaug study", description=__doc__.split("\n")[0])
    grid_options(ap, parse_params(raw).study)
    executor_options(ap, parse_params(raw).study)
    a = ap.parse_args(argv)
    raw = with_sets(raw, overrides_of(a))
    params = parse_params(raw)
    sweeps = sweeps_of(params)
    count = check_points(raw, sweeps)
    if params.study.executor != "ray" and any(getattr(a, k) for k in RAY_OPTIONS):
        raise DiffaugError(
            "--address, --git-remote and --dvc-remote are options of the Ray executor; add --executor ray."
        )
    if a.dry_run:
        for sweep in sweeps:
            print("dvc exp run --queue " + " ".join(sweep.args()))
        return
    after = (lambda: None) if a.no_report else run_report
    if params.study.executor == "ray":
        from diffaug.study.ray import run_study  # only this executor needs ray installed

        run_study(params.study, sweeps, **{k: getattr(a, k) for k in RAY_OPTIONS}, after=after)
    else:
        run_queue(sweeps, count, params.study.jobs, after)


if __name__ == "__main__":
    run(main)
