"""The report's figures: accuracy vs p (the paper's Figures 3-5), class-wise accuracy vs p
(Figure 6) and FID per class and source (Table 1) as a heat map with the numbers written in."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from diffaug.study.grid import ADD, BASELINE, N_PER_CLASS, RANDAUGMENT, REPLACE
from diffaug.study.report.analysis import Analysis
from diffaug.study.report.fid import OVERALL, FidTable
from diffaug.study.report.findings import yardstick_title
from diffaug.study.report.points import Point, label, lines, regimes

CI_NOTE = "error bars and bands: 95% Student-t CI over seeds (none where n = 1); p = 0 is the all-real run"
LINESTYLES = ("-", "--", "-.", ":")
DPI = 110
DODGE = 0.012  # p offset between lines, so their error bars do not hide each other
CLIP = "zero-shot CLIP"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def styles(pts: list[Point]) -> dict[tuple, dict]:
    """One colour per source (black: only original, grey: RandAugment) and one line style per line of
    that colour (its variants), the same in every figure."""
    from matplotlib import colormaps

    palette = [c for i, c in enumerate(colormaps["tab10"].colors) if i != 7]  # 7 is grey: RandAugment's
    colours, out = {}, {}
    for series in dict.fromkeys(pt.series for pt in pts):
        source, augment, _ = series
        if source == BASELINE:
            colour, dashes = ("grey", (":", "-.")) if augment == RANDAUGMENT else ("black", ("--", ":"))
        else:
            colour, dashes = colours.setdefault(source, palette[len(colours) % len(palette)]), LINESTYLES
        k = sum(1 for st in out.values() if st["color"] == colour)
        out[series] = {
            "color": colour,
            "marker": "s" if source == BASELINE else "o",
            "linestyle": dashes[k % len(dashes)],
        }
    return out


def _reference(series: tuple, by_p: dict) -> bool:
    """A baseline measured at p = 0 only (e.g. RandAugment) is drawn as a horizontal line."""
    return series[0] == BASELINE and list(by_p) == [0.0]


def _title(pts: list[Point], regime: str) -> str:
    runs = [r for pt in pts if pt.regime == regime for r in pt.runs]
    budget = {
        (f"{r.other['train.steps']} steps" if r.other.get("train.steps") else f"{r.other.get('train.epochs')} epochs")
        for r in runs
    }
    return f"{regime} ({budget.pop()})" if len(budget) == 1 else regime


def _accuracy_panel(ax, pts: list[Point], regime: str, style: dict, clip: float | None) -> None:
    by_line = lines(pts, regime)
    curves = [s for s, by_p in by_line.items() if not _reference(s, by_p)]
    for series, by_p in by_line.items():
        stats = [pt.accuracy for pt in by_p.values()]
        means = np.array([s.mean for s in stats]) * 100
        st = style[series]
        if _reference(series, by_p):
            ax.axhline(means[0], color=st["color"], linestyle=st["linestyle"], label=label(*series))
            if stats[0].ci95 is not None:
                ax.axhspan(stats[0].low * 100, stats[0].high * 100, color=st["color"], alpha=0.12, lw=0)
        else:
            dodge = (curves.index(series) - (len(curves) - 1) / 2) * DODGE  # error bars side by side
            err = np.array([s.ci95 or 0.0 for s in stats]) * 100
            ax.errorbar(np.array(list(by_p)) + dodge, means, yerr=err, capsize=3, label=label(*series), **st)
    if clip is not None:
        ax.axhline(clip * 100, color="tab:purple", linestyle="-.", label=CLIP)
    ax.set_title(_title(pts, regime))
    ax.set_xlabel("p (share of synthetic images)")
    _p_axis(ax, pts)
    ax.grid(alpha=0.3)


def _legend_below(fig, axes, style: dict) -> None:
    """One legend for all panels, outside the plot area, below them (constrained layout makes room),
    in report order: only original, the sources, the baselines."""
    handles = {}
    for ax in np.ravel(axes):
        for h, lbl in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lbl, h)
    ranked = sorted(style, key=lambda s: s[0] == BASELINE and s[1] == RANDAUGMENT)  # stable: report order
    order = {lbl: i for i, lbl in enumerate([label(*s) for s in ranked] + [CLIP])}
    handles = dict(sorted(handles.items(), key=lambda kv: order.get(kv[0], len(order))))
    if handles:
        fig.legend(
            list(handles.values()),
            list(handles),
            loc="outside lower center",
            ncol=min(4, len(handles)),
            fontsize=8,
            frameon=False,
        )


def _p_axis(ax, pts: list[Point]) -> None:
    """The same p axis in every panel: 0 to 1, ticks at the measured values."""
    ax.set_xlim(-0.05, 1.05)
    ax.set_xticks(sorted({pt.p for pt in pts} | {0.0, 1.0}))


def _save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    _pyplot().close(fig)
    return path


def accuracy_figure(pts: list[Point], regime_names: list[str], style: dict, clip: float | None, path: Path) -> Path:
    """Figures 3-5: a panel per regime, side by side."""
    plt = _pyplot()
    fig, axes = plt.subplots(
        1,
        len(regime_names),
        figsize=(max(7.0, 4.8 * len(regime_names)), 4.6),
        sharey=True,
        squeeze=False,
        layout="constrained",
    )
    for ax, regime in zip(axes[0], regime_names):
        _accuracy_panel(ax, pts, regime, style, clip)
    axes[0][0].set_ylabel("test accuracy (%)")
    _legend_below(fig, axes, style)
    fig.suptitle(f"Test accuracy vs p\n{CI_NOTE}", fontsize=10)
    return _save(fig, path)


def class_figure(pts: list[Point], regime: str, classes: list[str], style: dict, path: Path) -> Path | None:
    """Figure 6: a panel per class, a line per source (means over seeds)."""
    drawn = {s: by_p for s, by_p in lines(pts, regime).items() if len(by_p) > 1 or _reference(s, by_p)}
    if not classes or not any(len(by_p) > 1 for by_p in drawn.values()):
        return None
    plt = _pyplot()
    ncols = min(5, len(classes))
    nrows = math.ceil(len(classes) / ncols)
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=(2.9 * ncols, 2.5 * nrows + 0.8),
        sharex=True,
        sharey=True,
        squeeze=False,
        layout="constrained",
    )
    for ax, cls in zip(axes.flat, classes):
        for series, by_p in drawn.items():
            stats = [pt.class_accuracy(cls) for pt in by_p.values()]
            ps = [p for p, s in zip(by_p, stats) if s is not None]
            means = [s.mean * 100 for s in stats if s is not None]
            st = style[series]
            if _reference(series, by_p) and means:
                ax.axhline(means[0], color=st["color"], linestyle=st["linestyle"], lw=1, label=label(*series))
            elif means:
                ax.plot(ps, means, ms=3, lw=1.2, label=label(*series), **st)
        ax.set_title(cls, fontsize=9)
        _p_axis(ax, pts)
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(classes) :]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel("accuracy (%)")
    for ax in axes[-1]:
        ax.set_xlabel("p")
    _legend_below(fig, axes, style)
    fig.suptitle(f"Class-wise test accuracy vs p, {_title(pts, regime)}: mean over seeds", fontsize=10)
    return _save(fig, path)


def fid_figure(table: FidTable, path: Path) -> Path | None:
    """Table 1 as a heat map: FID per class (rows) and source (columns), the best of a row in bold."""
    from matplotlib.colors import LogNorm, Normalize
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    sources, rows = list(table.results), table.classes + [OVERALL]
    values = np.array([[table.cell(s, r).get("fid", np.nan) for s in sources] for r in rows], dtype=float)
    if not sources or np.isnan(values).all():
        return None
    plt = _pyplot()
    finite = values[np.isfinite(values)]
    norm = LogNorm(finite.min(), finite.max()) if finite.min() > 0 and finite.max() > finite.min() else Normalize()
    fig, ax = plt.subplots(figsize=(1.8 + 1.4 * len(sources), 1.0 + 0.4 * len(rows)), layout="constrained")
    image = ax.imshow(np.ma.masked_invalid(values), cmap="YlOrRd", norm=norm, aspect="auto")
    for i, row in enumerate(rows):
        best = table.best(row, "fid")
        for j, source in enumerate(sources):
            if np.isfinite(values[i, j]):
                dark = norm(values[i, j]) > 0.6
                ax.text(
                    j,
                    i,
                    f"{values[i, j]:.1f}",
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if dark else "black",
                    fontweight="bold" if source in best else "normal",
                )
    ax.set_xticks(range(len(sources)), sources, rotation=20, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    bar = fig.colorbar(image, ax=ax, label="FID (lower: closer to the real images)")
    if isinstance(norm, LogNorm):  # ticks at 1, 2, 5 x 10^k, written plainly
        bar.ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        bar.ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        bar.ax.yaxis.set_minor_formatter(NullFormatter())
    bar.ax.tick_params(labelsize=7)
    ax.set_title(f"FID per class and source, {table.extractor} features (bold: lowest of the row)", fontsize=10)
    return _save(fig, path)


def balance_figure(results, out: Path) -> Path | None:
    """Balanced test accuracy: the imbalanced real images alone against them balanced with each source."""
    if not results:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(2.0 + 1.6 * len(results), 3.6), layout="constrained")
    for i, res in enumerate(results):
        alone, balanced, _ = res.balanced
        for j, (stat, colour, name) in enumerate(
            ((alone, "black", "imbalanced only"), (balanced, "tab:blue", "balanced with synthetic"))
        ):
            ax.bar(
                i + (j - 0.5) * 0.38,
                stat.mean * 100,
                width=0.36,
                color=colour,
                alpha=0.8,
                yerr=(stat.ci95 or 0.0) * 100,
                capsize=4,
                label=name if i == 0 else None,
            )
    ax.set_xticks(range(len(results)), [f"{r.point.source}\n(imbalance {r.ratio}, {r.point.regime})" for r in results])
    ax.set_ylabel("balanced test accuracy (%)")
    ax.set_title("Class-imbalance filling")
    ax.legend(loc="lower right", fontsize="small")
    ax.grid(axis="y", alpha=0.3)
    # A supxlabel, not fig.text: the constrained layout makes room for it below the tick labels.
    fig.supxlabel("error bars: " + CI_NOTE.split(";")[0].removeprefix("error bars and bands: "), fontsize=7)
    return _save(fig, out)


def _exchange_panel(ax, y, colours: dict) -> None:
    stats = y.stats()
    rs = list(stats)
    ax.errorbar(
        rs,
        [100 * st.mean for st in stats.values()],
        yerr=[100 * (st.ci95 or 0.0) for st in stats.values()],
        color="black",
        marker="s",
        linestyle="--",
        capsize=3,
        label="only original (yardstick)",
    )
    sources = list(dict.fromkeys(ex.source for ex in y.exchanges))
    for i, source in enumerate(sources):
        exs = [ex for ex in y.exchanges if ex.source == source]
        colour = colours.setdefault(source, f"C{len(colours) % 10}")
        for mode, marker in ((REPLACE, "o"), (ADD, "^")):
            mine = [ex for ex in exs if ex.mode == mode]
            if mine:  # nudged apart on the log axis, so sources at one r do not hide each other
                ax.errorbar(
                    [ex.real * (1 + 0.04 * (i - len(sources) / 2)) for ex in mine],
                    [100 * ex.accuracy.mean for ex in mine],
                    yerr=[100 * (ex.accuracy.ci95 or 0.0) for ex in mine],
                    color=colour,
                    marker=marker,
                    linestyle="none",
                    capsize=3,
                    label=f"{source} ({mode})",
                )
    ax.set_xscale("log")
    ax.set_xlabel("real training images per class (log)")
    ax.set_title(yardstick_title(y), fontsize=10)
    ax.grid(alpha=0.3)


def exchange_figure(sticks: list, path: Path) -> Path | None:
    """Test accuracy against real images a class: the yardstick, and each source's points at their r."""
    if not sticks:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(
        1, len(sticks), figsize=(max(7.0, 5.2 * len(sticks)), 4.6), sharey=True, squeeze=False, layout="constrained"
    )
    colours: dict = {}
    for ax, y in zip(axes[0], sticks):
        _exchange_panel(ax, y, colours)
    axes[0][0].set_ylabel("test accuracy (%)")
    axes[0][-1].legend(loc="lower right", fontsize="small")
    fig.suptitle(
        "Real-image yardstick and synthetic points (o: replace, ^: add)\n"
        + CI_NOTE.split(";")[0].replace("error bars and bands", "error bars"),
        fontsize=10,
    )
    return _save(fig, path)


def write_figures(analysis: Analysis, out: Path) -> list[Path]:
    pts, style, names = analysis.points, styles(analysis.points), regimes(analysis.points)
    # The p grid's lines only: runs at a fixed k real images a class (the yardstick, few-shot adding)
    # are drawn against real images in exchange.png, where their x axis means something.
    grid = [pt for pt in pts if not any(r.other.get(N_PER_CLASS) for r in pt.runs)] or pts
    written = [accuracy_figure(grid, names, style, analysis.clip, out / "accuracy_vs_p.png")]
    written += [accuracy_figure(grid, [r], style, analysis.clip, out / f"accuracy_vs_p_{r}.png") for r in names]
    written += [class_figure(grid, r, analysis.classes, style, out / f"class_accuracy_{r}.png") for r in names]
    written.append(fid_figure(analysis.fid, out / "fid_per_class.png"))
    written.append(balance_figure(analysis.balance, out / "balanced_accuracy.png"))
    written.append(exchange_figure(analysis.exchange, out / "exchange.png"))
    return [p for p in written if p is not None]
