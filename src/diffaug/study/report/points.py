"""Runs -> study points (seeds pooled) and the paper's two questions as paired differences.

A point is (source, p, regime, augment, variant). The variant names what else differs between
runs of one regime (e.g. `train.epochs=1`, `mix.mode=add`), so other settings form their own lines
instead of being averaged as seeds. Differences pair runs by seed identity (train.seed, mix.seed).
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass

from diffaug.study.experiments import Run
from diffaug.study.grid import ADD, BASELINE, N_PER_CLASS, RANDAUGMENT, REPLACE
from diffaug.study.report.stats import Stat, paired, pool, slope

PAPER_SOURCES = ("vanilla", "dreambooth", "textual_inversion")
PAPER_REGIMES = ("scratch", "finetune", "frozen")
UNLABELLED_NULLS = (N_PER_CLASS,)  # params whose null is the default setting, left out of labels


def source_rank(source: str) -> tuple:
    """`none` first, then the paper's three sources, then any other source alphabetically."""
    if source == BASELINE:
        return (0, 0, "")
    return (1, PAPER_SOURCES.index(source), "") if source in PAPER_SOURCES else (2, 0, source)


def regime_rank(regime: str) -> tuple:
    return (PAPER_REGIMES.index(regime), "") if regime in PAPER_REGIMES else (len(PAPER_REGIMES), regime)


@dataclass
class Point:
    source: str
    p: float
    regime: str
    augment: str
    mode: str  # mix.mode
    others: str  # the other params that differ within the regime, e.g. "train.epochs=1"
    runs: list[Run]

    @property
    def variant(self) -> str:
        """What sets this point's line apart besides source and augment ("" for the study's own runs)."""
        mode = [f"mix.mode={self.mode}"] if self.mode != REPLACE else []
        return ", ".join(mode + ([self.others] if self.others else []))

    @property
    def key(self) -> tuple:
        return self.source, self.p, self.regime, self.augment, self.mode, self.others

    @property
    def series(self) -> tuple[str, str, str]:
        """The line this point belongs to: (source, augment, variant)."""
        return self.source, self.augment, self.variant

    @property
    def accuracy(self) -> Stat:
        # One value per seed: a seed run twice (the workspace and a queued copy) is not a new sample.
        return pool(self.by_seed().values())

    def by_seed(self, cls: str | None = None) -> dict[tuple, float]:
        """Seed identity -> accuracy (of class `cls`), averaged over repeats of one seed."""
        values = defaultdict(list)
        for r in self.runs:
            value = r.accuracy if cls is None else r.per_class.get(cls)
            if value is not None:
                values[r.seed].append(value)
        return {s: sum(v) / len(v) for s, v in values.items()}

    def class_accuracy(self, cls: str) -> Stat | None:
        values = list(self.by_seed(cls).values())
        return pool(values) if values else None


def label(source: str, augment: str, variant: str = "") -> str:
    if source == BASELINE:
        text = "RandAugment (only original)" if augment == RANDAUGMENT else "only original"
    else:
        text = f"{source} + RandAugment" if augment == RANDAUGMENT else source
    return f"{text} [{variant}]" if variant else text


def others(runs: list[Run], ignore: tuple[str, ...] = ()) -> list[str]:
    """Per run, the params besides the study's (and `ignore`) that differ within its regime (the
    regime sets the epochs, so the epochs of scratch and finetune runs do not split them)."""
    by_regime = defaultdict(list)
    for r in runs:
        by_regime[r.regime].append(r)
    varying = {}
    for regime, group in by_regime.items():
        keys = sorted({k for r in group for k in r.other if k not in ignore})
        varying[regime] = [k for k in keys if len({json.dumps(r.other.get(k)) for r in group}) > 1]
    # The study's own runs keep every real image (n_per_class null): no label for that.
    return [
        ", ".join(
            f"{k}={r.other.get(k)}" for k in varying[r.regime] if not (k in UNLABELLED_NULLS and r.other.get(k) is None)
        )
        for r in runs
    ]


def pool_points(runs: list[Run]) -> list[Point]:
    """Runs pooled into points (a mix.mode other than replace is a line of its own), ordered by
    regime, line (source, augment, variant), then p."""
    grouped: dict[tuple, list[Run]] = defaultdict(list)
    for run, differ in zip(runs, others(runs)):
        # At p = 0 (replace) every source trains on the same real images: it is the "only original" point.
        source = BASELINE if run.p == 0 and run.mode == REPLACE else run.source
        grouped[(source, run.p, run.regime, run.augment, run.mode, differ)].append(run)
    out = [Point(*key, rs) for key, rs in grouped.items()]
    return sorted(
        out,
        key=lambda pt: (
            regime_rank(pt.regime),
            source_rank(pt.source),
            pt.augment == RANDAUGMENT,
            pt.augment,
            pt.variant,
            pt.p,
        ),
    )


def regimes(pts: list[Point]) -> list[str]:
    return sorted({pt.regime for pt in pts}, key=regime_rank)


def _index(pts: list[Point]) -> dict[tuple, Point]:
    return {pt.key: pt for pt in pts}


@dataclass
class Difference:
    """`point` minus `against`, paired by seed."""

    point: Point
    against: Point
    stat: Stat


def _differences(pts: list[Point], base_of) -> list[Difference]:
    index, out = _index(pts), []
    for pt in pts:
        if pt.source == BASELINE or pt.p == 0.0:
            continue
        base = next((index[k] for k in base_of(pt) if k in index), None)
        stat = paired(pt.by_seed(), base.by_seed()) if base else None
        if stat is not None:
            out.append(Difference(pt, base, stat))
    return out


def p0_keys(pt: Point) -> list[tuple]:
    """Where the all-real run of a line is: the study queues p = 0 once, as `none`; with mix.mode
    add every p of `none` keeps all real images, as p = 0 of replace does."""
    keys = [
        (BASELINE, 0.0, pt.regime, pt.augment, pt.mode, pt.others),
        (pt.source, 0.0, pt.regime, pt.augment, pt.mode, pt.others),
    ]
    return keys + ([(BASELINE, 0.0, pt.regime, pt.augment, REPLACE, pt.others)] if pt.mode == ADD else [])


def adding(pts: list[Point]) -> list[Difference]:
    """Source s at p against "only original" with the same real images: at the same p in replace
    mode (the (1-p)·n real images), all n real images in add mode."""
    return _differences(
        pts,
        lambda pt: (
            [(BASELINE, pt.p, pt.regime, pt.augment, pt.mode, pt.others)] + (p0_keys(pt) if pt.mode == ADD else [])
        ),
    )


def replacing(pts: list[Point]) -> list[Difference]:
    """Source s at p against p = 0 in replace mode: real images replaced by synthetic ones."""
    return _differences([pt for pt in pts if pt.mode == REPLACE], p0_keys)


def line(pts: list[Point], regime: str, series: tuple) -> dict[float, Point]:
    """p -> point of one line in one regime; a synthetic line starts at the shared p = 0 run."""
    out = {pt.p: pt for pt in pts if pt.regime == regime and pt.series == series}
    if out and series[0] != BASELINE and 0.0 not in out:
        index = _index(pts)
        base = next((index[k] for k in p0_keys(next(iter(out.values()))) if k in index), None)
        if base is not None:
            out[0.0] = base
    return dict(sorted(out.items()))


def lines(pts: list[Point], regime: str) -> dict[tuple, dict[float, Point]]:
    """Every line of a regime, in report order."""
    series = list(dict.fromkeys(pt.series for pt in pts if pt.regime == regime))
    return {s: line(pts, regime, s) for s in series}


def slopes(pts: list[Point]) -> list[tuple[str, tuple, Stat]]:
    """(regime, line, accuracy per unit of p, fitted over seeds) for every line that replaces real
    images and has three values of p or more."""
    out = []
    for regime in regimes(pts):
        for series in dict.fromkeys(
            pt.series for pt in pts if pt.regime == regime and pt.source != BASELINE and pt.mode == REPLACE
        ):
            stat = slope({p: pt.by_seed() for p, pt in line(pts, regime, series).items()})
            if stat is not None:
                out.append((regime, series, stat))
    return out


def regime_gains(pts: list[Point], regime: str, against: str = "scratch") -> list[Difference]:
    """Each point of `regime` against the same point trained from scratch, paired by seed."""
    index, out = _index(pts), []
    for pt in pts:
        if pt.regime != regime:
            continue
        base = index.get((pt.source, pt.p, against, pt.augment, pt.mode, pt.others))
        stat = paired(pt.by_seed(), base.by_seed()) if base else None
        if stat is not None:
            out.append(Difference(pt, base, stat))
    return out


def classes(runs: list[Run]) -> list[str]:
    """Class names in params.yaml's label order (alphabetical for any it does not list)."""
    present = {c for r in runs for c in r.per_class}
    listed = next((r.other["classes"] for r in runs if isinstance(r.other.get("classes"), list)), [])
    return [c for c in listed if c in present] + sorted(present - set(listed))


def class_changes(diff: Difference) -> dict[str, Stat]:
    """Per class, accuracy at the point against its baseline, paired by seed."""
    out = {}
    for c in classes(diff.point.runs):
        stat = paired(diff.point.by_seed(c), diff.against.by_seed(c))
        if stat is not None:
            out[c] = stat
    return out


def at_largest_p(rep: list[Difference]) -> list[Difference]:
    """Per line (regime, source, variant; not RandAugment ones), its replacing difference at the
    largest p measured: where the classes that synthetic data hurts show most."""
    largest: dict[tuple, Difference] = {}
    for d in rep:
        key = (d.point.regime, d.point.series)
        if d.point.augment != RANDAUGMENT and (key not in largest or d.point.p > largest[key].point.p):
            largest[key] = d
    return list(largest.values())
