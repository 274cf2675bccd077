"""Statistics over seeds: mean, sample std and the 95% Student-t confidence interval."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class Stat:
    n: int
    mean: float
    std: float | None  # sample std (ddof 1); None for a single value
    ci95: float | None  # half-width of the 95% Student-t interval; None for a single value

    @property
    def low(self) -> float | None:
        return None if self.ci95 is None else self.mean - self.ci95

    @property
    def high(self) -> float | None:
        return None if self.ci95 is None else self.mean + self.ci95

    def sign(self) -> int | None:
        """+1 if the interval lies above 0, -1 if below, 0 if it holds 0, None without one (n = 1)."""
        if self.ci95 is None:
            return None
        return 1 if self.low > 0 else -1 if self.high < 0 else 0


def pool(values) -> Stat:
    a = np.asarray(list(values), dtype=np.float64)
    if len(a) == 0:
        raise ValueError("no values to pool")
    if len(a) == 1:
        return Stat(1, float(a[0]), None, None)
    std = float(a.std(ddof=1))
    return Stat(len(a), float(a.mean()), std, float(stats.t.ppf(0.975, len(a) - 1) * std / math.sqrt(len(a))))


def paired(a: dict, b: dict) -> Stat | None:
    """a - b over the keys (seed identities) both have; None when they share none."""
    common = [k for k in a if k in b]
    return pool(a[k] - b[k] for k in common) if common else None


def slope(by_p_seed: dict[float, dict]) -> Stat | None:
    """Least-squares slope of value against p, one fit per seed that has every p, pooled over
    seeds; None below three values of p (two points always fit a line)."""
    ps = sorted(by_p_seed)
    if len(ps) < 3:
        return None
    seeds = [s for s in by_p_seed[ps[0]] if all(s in by_p_seed[p] for p in ps)]
    if not seeds:
        return None
    return pool(float(np.polyfit(ps, [by_p_seed[p][s] for p in ps], 1)[0]) for s in seeds)
