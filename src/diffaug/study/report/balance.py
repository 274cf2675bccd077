"""The class-imbalance experiment: an imbalanced d_original alone against the same real images with every
class topped up by synthetic ones (`mix.mode: balance`), paired by seed, per class and in balanced accuracy.

An imbalanced run carries `split.imbalance`; its "imbalanced only" partner is `mix.source: none` at
p = 0 with the same other params (the same imbalanced real images and nothing else).
"""

from __future__ import annotations

from dataclasses import dataclass

from diffaug.paths import metrics_key
from diffaug.study.experiments import Run
from diffaug.study.grid import BASELINE, REPLACE
from diffaug.study.report.points import Point, _index, classes
from diffaug.study.report.stats import Stat, paired, pool

BALANCE = "balance"


def balanced_accuracy(run: Run) -> float:
    """The mean of the per-class test accuracies (what `evaluate` records as balanced_accuracy)."""
    values = [v for v in run.per_class.values() if v is not None]
    return float(run.metrics.get(metrics_key("evaluate"), {}).get("balanced_accuracy") or sum(values) / len(values))


def _by_seed(pt: Point) -> dict[tuple, float]:
    values: dict[tuple, list[float]] = {}
    for r in pt.runs:
        values.setdefault(r.seed, []).append(balanced_accuracy(r))
    return {s: sum(v) / len(v) for s, v in values.items()}


@dataclass
class BalanceResult:
    point: Point  # mix.mode: balance
    against: Point  # only original on the same real images
    ratio: object  # split.imbalance of both

    @property
    def balanced(self) -> tuple[Stat, Stat, Stat | None]:
        """Balanced accuracy: (imbalanced only, balanced, their paired difference)."""
        a, b = _by_seed(self.against), _by_seed(self.point)
        return pool(a.values()), pool(b.values()), paired(b, a)

    @property
    def accuracy(self) -> Stat | None:
        return paired(self.point.by_seed(), self.against.by_seed())

    def per_class(self) -> dict[str, tuple[Stat | None, Stat | None, Stat | None]]:
        """Per class: (imbalanced only, balanced, paired difference)."""
        out = {}
        for c in classes(self.point.runs + self.against.runs):
            out[c] = (
                self.against.class_accuracy(c),
                self.point.class_accuracy(c),
                paired(self.point.by_seed(c), self.against.by_seed(c)),
            )
        return out


def balance_results(pts: list[Point]) -> list[BalanceResult]:
    """Every balanced point that has its imbalanced-only partner."""
    index, out = _index(pts), []
    for pt in pts:
        if pt.mode != BALANCE:
            continue
        against = index.get((BASELINE, 0.0, pt.regime, pt.augment, REPLACE, pt.others))
        if against is not None:
            out.append(BalanceResult(pt, against, pt.runs[0].other.get("split.imbalance")))
    return out
