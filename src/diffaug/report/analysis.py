"""Everything the report says, computed once from the experiments: points, differences, Table 1, findings."""
from __future__ import annotations

from dataclasses import dataclass

from diffaug.report.balance import BalanceResult, balance_results
from diffaug.report.experiments import Experiments
from diffaug.report.fid import FidTable, fid_table
from diffaug.report.findings import findings
from diffaug.report.points import Difference, Point, adding, classes, points, replacing


@dataclass
class Study:
    exps: Experiments
    points: list[Point]
    classes: list[str]
    adding: list[Difference]
    replacing: list[Difference]
    fid: FidTable
    clip: float | None  # zero-shot CLIP test accuracy
    findings: list[str]
    balance: list[BalanceResult]  # the class-imbalance experiment (mix.mode: balance)


def _clip(exps: Experiments) -> float | None:
    for run in exps.runs:
        accuracy = (run.metrics.get("metrics/clip.json") or {}).get("accuracy")
        if accuracy is not None:
            return float(accuracy)
    return None


def analyse(exps: Experiments) -> Study:
    pts, names = points(exps.runs), classes(exps.runs)
    add, rep, clip = adding(pts), replacing(pts), _clip(exps)
    return Study(exps, pts, names, add, rep, fid_table(exps.runs, names), clip, findings(pts, add, rep, clip),
                 balance_results(pts))
