"""The "Findings" of summary.md: which of the paper's findings hold on this run, from the numbers.

A difference supports a finding when its 95% CI lies on the finding's side of 0, goes against it
when the CI lies on the other side, and is within noise when the CI holds 0; one seed gives no CI.
"""

from __future__ import annotations

import math

from diffaug.study.grid import BASELINE, RANDAUGMENT, REPLACE
from diffaug.study.report.exchange import BELOW, Exchange, Yardstick
from diffaug.study.report.points import (
    Difference,
    Point,
    at_largest_p,
    class_changes,
    label,
    regime_gains,
    regimes,
    slopes,
)
from diffaug.study.report.stats import Stat, paired

SHOWN = 4  # differences named per verdict; the tables hold all of them


def pct(x: float) -> str:
    return f"{100 * x:.1f}"


def signed(x: float) -> str:
    return f"{100 * x:+.1f}"


def interval(s: Stat) -> str:
    """'+1.2 [+0.3, +2.1]' (points, 95% CI), or '+1.2 (one seed)'."""
    return (
        f"{signed(s.mean)} [{signed(s.low)}, {signed(s.high)}]"
        if s.ci95 is not None
        else f"{signed(s.mean)} (one seed)"
    )


def where(pt: Point, with_regime: bool) -> str:
    return f"{label(*pt.series)} at p = {pt.p:g}" + (f" ({pt.regime})" if with_regime else "")


def _listing(diffs: list[Difference], with_regime: bool) -> str:
    diffs = sorted(diffs, key=lambda d: -abs(d.stat.mean))
    text = ", ".join(f"{where(d.point, with_regime)}: {interval(d.stat)}" for d in diffs[:SHOWN])
    return text + (f" and {len(diffs) - SHOWN} more" if len(diffs) > SHOWN else "")


def judge(diffs: list[Difference], sign: int, with_regime: bool) -> str:
    """Verdict on a finding whose differences should have `sign`, with the points behind it."""
    if not diffs:
        return "not measured"
    support = [d for d in diffs if d.stat.sign() == sign]
    against = [d for d in diffs if d.stat.sign() == -sign]
    noise = sum(d.stat.sign() == 0 for d in diffs)
    single = sum(d.stat.sign() is None for d in diffs)
    verdict = (
        "holds"
        if support and not against
        else "does not hold: the opposite is measured"
        if against and not support
        else "is mixed"
        if support
        else "is within noise"
        if noise
        else "cannot be judged"
    )
    parts = [f"{len(support)} of {len(diffs)} points support it ({_listing(support, with_regime)})"] if support else []
    parts += (
        [f"{len(against)} {'goes' if len(against) == 1 else 'go'} against it ({_listing(against, with_regime)})"]
        if against
        else []
    )
    parts += [f"{noise} {'is' if noise == 1 else 'are'} within noise (CI includes 0)"] if noise else []
    parts += [f"{single} {'has' if single == 1 else 'have'} one seed (no CI)"] if single else []
    return f"{verdict} on this run" + (": " + "; ".join(parts) if parts else "")


def _adding(add: list[Difference], with_regime: bool) -> str:
    return (
        "**Synthetic images added to the same real images help** (a source at p against only original at "
        f"the same p): {judge(add, +1, with_regime)}."
    )


def _growth(pts: list[Point], with_regime: bool) -> str:
    fits = slopes(pts)
    if not fits:
        return "whether it grows with p is not measured (it needs three values of p or more)"
    more = [f for f in fits if f[2].sign() == -1]
    others = [f for f in fits if f[2].sign() != -1]
    means = [f[2].mean for f in fits]
    span = (
        interval(fits[0][2]) if len(fits) == 1 else f"{signed(min(means))} to {signed(max(means))}"
    ) + " points per unit of p"
    count = (
        ("the one line" if len(fits) == 1 else f"all {len(fits)} lines")
        if not others
        else f"{len(more)} of {len(fits)} lines"
    )
    text = (
        f"the loss grows with p on {count} (linear fit, {span})"
        if more
        else f"a loss growing with p is not shown beyond noise (linear fit, {span})"
    )
    if more and others:
        text += "; not on " + ", ".join(
            f"{label(*s)}{f' ({r})' if with_regime else ''}: {interval(st)}" for r, s, st in others[:SHOWN]
        )
    return text


def _replacing(pts: list[Point], rep: list[Difference], with_regime: bool) -> str:
    return (
        "**Replacing real images with synthetic ones hurts, more as p grows** (a source at p against "
        f"p = 0): {judge(rep, -1, with_regime)}; {_growth(pts, with_regime) if rep else 'growth not measured'}."
    )


def _pretrained(pts: list[Point]) -> str:
    names = regimes(pts)
    head = "**ImageNet-pretrained regimes beat training from scratch**"
    others = [r for r in names if r != "scratch"]
    if "scratch" not in names or not others:
        return f"{head}: not measured" + (f" (only the {', '.join(names)} regime was run)." if names else ".")
    parts = [f"{r}: {judge(regime_gains(pts, r), +1, False)}" for r in others]
    return f"{head} (each point against the same point from scratch): " + "; ".join(parts) + "."


def _classes(rep: list[Difference]) -> str:
    """Per regime, the classes with the largest mean loss over the lines at their largest p."""
    head = "**Classes hurt most as p grows** (class accuracy at each source's largest p against p = 0)"
    parts = []
    for regime in dict.fromkeys(d.point.regime for d in rep):
        changes = [class_changes(d) for d in at_largest_p(rep) if d.point.regime == regime]
        names = list(dict.fromkeys(c for ch in changes for c in ch))
        loss = {c: sum(ch[c].mean for ch in changes if c in ch) / sum(c in ch for ch in changes) for c in names}
        worst = sorted((c for c in names if loss[c] < 0), key=loss.get)[:3]
        named = ", ".join(
            f"{c} ({signed(loss[c])} on average over {sum(c in ch for ch in changes)} sources, "
            f"CI below 0 for {sum(ch[c].sign() == -1 for ch in changes if c in ch)})"
            for c in worst
        )
        parts.append(f"{regime}: {named or 'no class loses accuracy'}")
    return f"{head}: " + ("; ".join(parts) + " (per source in the class-wise table)" if parts else "not measured") + "."


def _against_best(pts: list[Point], clip: float | None) -> str:
    head = "**RandAugment and zero-shot CLIP against the best synthetic setting**"
    parts = []
    for regime in regimes(pts):
        synthetic = [
            pt for pt in pts if pt.regime == regime and pt.source != BASELINE and pt.p > 0 and pt.augment != RANDAUGMENT
        ]
        if not synthetic:
            continue
        best = max(synthetic, key=lambda pt: pt.accuracy.mean)
        text = f"{regime}: the best synthetic setting is {where(best, False)} ({pct(best.accuracy.mean)}%)"
        randaugment = next(
            (
                pt
                for pt in pts
                if pt.regime == regime
                and pt.source == BASELINE
                and pt.p == 0.0
                and pt.augment == RANDAUGMENT
                and pt.mode == REPLACE
                and pt.others == best.others
            ),
            None,
        )
        stat = paired(best.by_seed(), randaugment.by_seed()) if randaugment else None
        if stat is not None:
            side = {
                1: "the synthetic setting is better",
                -1: "RandAugment is better",
                0: "within noise",
                None: "one seed, no CI",
            }[stat.sign()]
            text += f", {interval(stat)} points against RandAugment ({pct(randaugment.accuracy.mean)}%): {side}"
        else:
            text += ", RandAugment shares no seed with it" if randaugment else ", RandAugment not measured"
        text += _clip_side(best.accuracy, clip)
        parts.append(text)
    return f"{head}: " + ("; ".join(parts) if parts else "not measured (no synthetic source was run)") + "."


def _clip_side(best: Stat, clip: float | None) -> str:
    if clip is None:
        return ", zero-shot CLIP not measured"
    if best.ci95 is None:
        return f", zero-shot CLIP {pct(clip)}% (one seed: no CI to compare with)"
    side = "above" if clip > best.high else "below" if clip < best.low else "within"
    return f", zero-shot CLIP {pct(clip)}% lies {side} its 95% CI"


def findings(pts: list[Point], add: list[Difference], rep: list[Difference], clip: float | None) -> list[str]:
    with_regime = len(regimes(pts)) > 1
    return [
        _adding(add, with_regime),
        _replacing(pts, rep, with_regime),
        _pretrained(pts),
        _classes(rep),
        _against_best(pts, clip),
    ]


def _bound_text(x: float) -> str:
    return "below the range" if x == -math.inf else "above the range" if x == math.inf else f"{x:.2f}"


def rate_text(ex: Exchange, coarse: bool = True) -> str:
    """'0.50 [0.42, 0.58]', '0.50 (one seed)', or 'beyond the measured range (above)'; `coarse` notes few seeds."""
    if isinstance(ex.rate, str):
        return f"beyond the measured range ({ex.rate})"
    if ex.ci is None:
        return f"{ex.rate:.2f} (one seed)"
    note = f" (coarse CI: {ex.seeds} seeds)" if coarse and ex.coarse else ""
    return f"{ex.rate:.2f} [{_bound_text(ex.ci[0])}, {_bound_text(ex.ci[1])}]{note}"


def exchange_where(ex: Exchange) -> str:
    """'p = 0.5', or '5 real + 5 synthetic a class (mix.mode=add)' off the study's own p grid."""
    if ex.mode == REPLACE and ex.n_per_class is None:
        return f"p = {ex.p:g}"
    return f"{ex.real:g} real + {ex.synthetic:g} synthetic a class" + (
        f" (mix.mode={ex.mode})" if ex.mode != REPLACE else ""
    )


def _source_sentence(source: str, exs: list[Exchange]) -> str:
    rated = [ex for ex in exs if not isinstance(ex.rate, str)]
    beyond = [ex for ex in exs if isinstance(ex.rate, str)]
    noise = {0: ", within noise", -1: ", less than nothing"}
    parts = (
        [
            f"one {source} image is worth "
            + "; ".join(
                f"{rate_text(ex, coarse=False)} real images at {exchange_where(ex)}{noise.get(ex.sign(), '')}"
                for ex in rated
            )
        ]
        if rated
        else []
    )
    parts += [
        f"{source} at {exchange_where(ex)} is beyond the measured range ("
        f"{'worse than the fewest' if ex.rate == BELOW else 'better than the most'} real images measured)"
        for ex in beyond
    ]
    seeds = min((ex.seeds for ex in exs if ex.ci is not None), default=None)
    coarse = f"; coarse: {seeds} seeds" if seeds is not None and seeds < 5 else ""
    return "; ".join(parts) + f" (95% bootstrap CI over seeds{coarse})."


def exchange_findings(sticks: list[Yardstick]) -> list[str]:
    """Per source and yardstick, in words: what one of its images is worth in real images."""
    return [
        f"**Exchange rate ({yardstick_title(y)})**: "
        + _source_sentence(source, [ex for ex in y.exchanges if ex.source == source])
        for y in sticks
        for source in dict.fromkeys(ex.source for ex in y.exchanges)
    ]


def yardstick_title(y: Yardstick) -> str:
    return ", ".join(
        [y.regime] + ([y.variant] if y.variant else []) + (["RandAugment"] if y.augment == RANDAUGMENT else [])
    )
