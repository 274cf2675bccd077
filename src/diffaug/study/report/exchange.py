"""The exchange rate: how many real images one synthetic image is worth, with a 95% CI over seeds.

The yardstick is the runs without synthetic images (only original, or p = 0), at several real sizes
r (real training images per class): accuracy against log r, fitted as a non-decreasing piecewise-linear
curve (isotonic regression on log r, linear between the sizes). A point with r real and s synthetic
images a class reaches the yardstick's accuracy at R real images (its real-image equivalent): one
synthetic image is worth (R - r) / s real ones. An accuracy below or above every fitted value is
"beyond the measured range": the curve is not extrapolated.

The CI is a paired bootstrap over seed identities: one resample of seeds serves the yardstick and
the point, the curve and the rate are recomputed, and the 2.5th/97.5th percentiles are the bounds.
With n seeds there are at most n^n resamples, so few seeds give a coarse CI (the table says so);
a resample whose rate falls beyond the measured range puts an open bound on that side.
`mix.mode=balance` runs are left out: their classes have different r.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from diffaug.paths import metrics_key
from diffaug.study.experiments import Run
from diffaug.study.grid import ADD, N_PER_CLASS, REPLACE
from diffaug.study.report.points import others, regime_rank, source_rank
from diffaug.study.report.stats import Stat, pool

BOOTSTRAP = 2000  # resamples of the seeds
RNG_SEED = 0  # the same report for the same runs
COARSE_BELOW = 5  # seeds under which the CI is called coarse
BELOW, ABOVE = "below", "above"  # beyond the measured range


def images_per_class(run: Run) -> tuple[float, float] | None:
    """(real, synthetic) training images per class, from metrics/mix.json's totals; None without them."""
    mix = run.metrics.get(metrics_key("mix")) or {}
    n_classes = len(run.per_class) or len(run.other.get("classes") or [])
    if mix.get("real_images") is None or not n_classes:
        return None
    return float(mix["real_images"]) / n_classes, float(mix.get("synthetic_images") or 0) / n_classes


def _by_seed(runs: list[Run]) -> dict[tuple, float]:
    values = defaultdict(list)
    for r in runs:
        values[r.seed].append(r.accuracy)
    return {s: sum(v) / len(v) for s, v in sorted(values.items(), key=lambda kv: str(kv[0]))}


@dataclass
class Curve:
    """The fitted yardstick: accuracy at each measured log r, non-decreasing."""

    log_r: np.ndarray
    accuracy: np.ndarray

    def equivalent(self, accuracy: float) -> float | str:
        """The r at which the curve reaches `accuracy` (the smallest, on a flat stretch), or BELOW/ABOVE."""
        if accuracy < self.accuracy[0]:
            return BELOW
        if accuracy > self.accuracy[-1]:
            return ABOVE
        i = int(np.argmax(self.accuracy >= accuracy))
        if i == 0:
            return float(math.exp(self.log_r[0]))
        a0, a1 = self.accuracy[i - 1], self.accuracy[i]
        t = (accuracy - a0) / (a1 - a0)
        return float(math.exp(self.log_r[i - 1] + t * (self.log_r[i] - self.log_r[i - 1])))


def fit(by_r: dict[float, dict[tuple, float]], seeds: list | None = None) -> Curve | None:
    """The yardstick's curve from r -> seed -> accuracy, over `seeds` (with repeats: a resample; default
    every seed); None with fewer than two sizes."""
    from sklearn.isotonic import isotonic_regression  # IsotonicRegression's solver, without its per-call checks

    xs, ys, ws = [], [], []
    for r in sorted(by_r):
        values = [by_r[r][s] for s in (seeds if seeds is not None else by_r[r]) if s in by_r[r]]
        if values:
            xs.append(math.log(r))
            ys.append(sum(values) / len(values))
            ws.append(len(values))
    if len(xs) < 2:
        return None
    fitted = isotonic_regression(ys, sample_weight=ws, increasing=True)  # xs are sorted and distinct
    return Curve(np.asarray(xs), np.asarray(fitted, dtype=np.float64))


def rate(curve: Curve, accuracy: float, r: float, s: float) -> float | str:
    """Real images one synthetic image is worth, or BELOW/ABOVE the measured range."""
    equivalent = curve.equivalent(accuracy)
    return equivalent if isinstance(equivalent, str) else (equivalent - r) / s


@dataclass
class Exchange:
    """One source point's exchange rate."""

    source: str
    p: float
    mode: str
    n_per_class: int | None  # mix.n_per_class (None: every real image)
    real: float  # r, per class
    synthetic: float  # s, per class
    accuracy: Stat
    equivalent: float | str  # R, or BELOW/ABOVE
    rate: float | str  # (R - r) / s, or BELOW/ABOVE
    ci: tuple[float, float] | None  # 95% bootstrap CI of the rate (±inf: open on that side); None: one seed
    seeds: int

    @property
    def coarse(self) -> bool:
        return self.seeds < COARSE_BELOW

    def sign(self) -> int | None:
        """+1 if the CI lies above 0, -1 below, 0 if it holds 0, None without a CI or a rate."""
        if self.ci is None or isinstance(self.rate, str):
            return None
        return 1 if self.ci[0] > 0 else -1 if self.ci[1] < 0 else 0


@dataclass
class Yardstick:
    """One regime's (and variant's) only-original runs by real size, and the points measured against them."""

    regime: str
    augment: str
    variant: str  # the other params that differ, as in points.Point.others ("" for the study's own)
    by_r: dict[float, dict[tuple, float]]  # r -> seed -> accuracy
    exchanges: list[Exchange]

    def stats(self) -> dict[float, Stat]:
        """Mean and 95% CI over seeds at each size, for the figure."""
        return {r: pool(v.values()) for r, v in sorted(self.by_r.items())}


def _bound(values: list[float | str], q: float) -> float:
    """The q-quantile of bootstrap rates (an order statistic: BELOW sorts as -inf, ABOVE as +inf)."""
    a = np.sort([-math.inf if v == BELOW else math.inf if v == ABOVE else v for v in values])
    return float(a[min(len(a) - 1, max(0, int(math.floor(q * len(a)))))])


def resampled_curves(by_r: dict[float, dict[tuple, float]], seeds: list, resamples: int = BOOTSTRAP) -> list:
    """(draw, its curve) per bootstrap resample of the seed identities `seeds`, with replacement; one
    draw serves the yardstick and every point (paired). Empty with one seed: no CI."""
    if len(seeds) < 2:
        return []
    rng, out = np.random.default_rng(RNG_SEED), []
    for _ in range(resamples):
        draw = [seeds[i] for i in rng.integers(0, len(seeds), len(seeds))]
        curve = fit(by_r, draw)
        if curve is not None:
            out.append((draw, curve))
    return out


def bootstrap(curves: list, point: dict[tuple, float], r: float, s: float) -> tuple[float, float] | None:
    """95% CI of the point's rate over the resampled curves; None without any."""
    rates = []
    for draw, curve in curves:
        values = [point[d] for d in draw if d in point]
        if values:
            rates.append(rate(curve, sum(values) / len(values), r, s))
    return (_bound(rates, 0.025), _bound(rates, 0.975)) if rates else None


def _size(run: Run) -> float:
    return round(images_per_class(run)[0], 6)  # one key per real size, whatever the float noise


def _exchange(curves: list, key: tuple, runs: list[Run], curve: Curve) -> Exchange:
    source, p, mode, k = key
    counts = [images_per_class(r) for r in runs]
    real, synthetic = (sum(c[i] for c in counts) / len(counts) for i in (0, 1))
    point = _by_seed(runs)
    accuracy = pool(point.values())
    value = rate(curve, accuracy.mean, real, synthetic)
    return Exchange(
        source,
        p,
        mode,
        k,
        real,
        synthetic,
        accuracy,
        curve.equivalent(accuracy.mean),
        value,
        bootstrap(curves, point, real, synthetic) if len(point) > 1 else None,  # one seed: no CI of its own
        len(point),
    )


def _yardstick(group: tuple, runs: list[Run]) -> Yardstick | None:
    base = defaultdict(list)
    for r in runs:
        if images_per_class(r)[1] == 0:
            base[_size(r)].append(r)
    by_r = {r: _by_seed(rs) for r, rs in sorted(base.items()) if r > 0}
    curve = fit(by_r)
    if curve is None:
        return None
    points = defaultdict(list)
    for r in runs:
        if images_per_class(r)[1] > 0:
            points[(r.source, r.p, r.mode, r.other.get(N_PER_CLASS))].append(r)
    order = sorted(points, key=lambda k: (source_rank(k[0]), k[2] != REPLACE, k[2], k[3] or 0, k[1]))
    seeds = sorted({r.seed for r in runs}, key=str)
    curves = resampled_curves(by_r, seeds)
    return Yardstick(*group, by_r, [_exchange(curves, k, points[k], curve) for k in order])


def yardsticks(runs: list[Run]) -> list[Yardstick]:
    """Per regime, augment and variant (other params that differ, mix.n_per_class aside: it is the
    yardstick's size), the exchange rate of every point with synthetic images; a group needs two
    real sizes without synthetic images."""
    runs = [r for r in runs if r.mode in (REPLACE, ADD) and images_per_class(r) is not None]
    groups = defaultdict(list)
    for run, variant in zip(runs, others(runs, ignore=(N_PER_CLASS,))):
        groups[(run.regime, run.augment, variant)].append(run)
    out = [_yardstick(g, groups[g]) for g in sorted(groups, key=lambda g: (regime_rank(g[0]), g[1:]))]
    return [y for y in out if y is not None]
