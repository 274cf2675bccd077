"""Everything the report says, computed once from the experiments: points, differences, Table 1, findings."""

from __future__ import annotations

from dataclasses import dataclass

from diffaug.paths import metrics_key
from diffaug.study.experiments import Experiments
from diffaug.study.report.balance import BALANCE, BalanceResult, balance_results
from diffaug.study.report.copies import copies_table
from diffaug.study.report.exchange import Yardstick, yardsticks
from diffaug.study.report.fid import FidTable, fid_table
from diffaug.study.report.findings import exchange_findings, findings
from diffaug.study.report.points import Difference, Point, adding, classes, pool_points, replacing


@dataclass
class Analysis:
    """The report's content, computed from the experiments before anything is written."""

    exps: Experiments
    points: list[Point]
    classes: list[str]
    adding: list[Difference]
    replacing: list[Difference]
    fid: FidTable
    clip: float | None  # zero-shot CLIP test accuracy
    findings: list[str]
    balance: list[BalanceResult]  # the class-imbalance experiment (mix.mode: balance)
    exchange: list[Yardstick]  # per regime (and variant): the real-image yardstick and exchange rates
    copies: dict[str, dict]  # source -> its metrics/copies/<source>.json (near duplicates of d_test, d_original)


def in_imbalance_experiment(run) -> bool:
    """A run on an imbalanced d_original or balancing it: the class-imbalance experiment's own table.
    Pooled with the p grid, it would split every point of the study by `split.imbalance` and put its
    FID (measured against other real images) beside the study's."""
    return run.other.get("split.imbalance") is not None or run.mode == BALANCE


def _clip(exps: Experiments) -> float | None:
    for run in exps.runs:
        accuracy = (run.metrics.get(metrics_key("clip")) or {}).get("accuracy")
        if accuracy is not None:
            return float(accuracy)
    return None


def analyse(exps: Experiments) -> Analysis:
    grid = [r for r in exps.runs if not in_imbalance_experiment(r)]
    imbalance = [r for r in exps.runs if in_imbalance_experiment(r)]
    pts, names = pool_points(grid), classes(exps.runs)
    add, rep, clip, exchange = adding(pts), replacing(pts), _clip(exps), yardsticks(grid)
    return Analysis(
        exps,
        pts,
        names,
        add,
        rep,
        fid_table(grid, names),
        clip,
        findings(pts, add, rep, clip) + exchange_findings(exchange),
        balance_results(pool_points(imbalance)),
        exchange,
        copies_table(grid),
    )
