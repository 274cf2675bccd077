"""summary.md and summary.json, and writing the whole report into its folder."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from diffaug.errors import DiffaugError
from diffaug.study.experiments import Experiments, NotRun
from diffaug.study.report.analysis import Analysis, analyse
from diffaug.study.report.balance import BalanceResult
from diffaug.study.report.copies import REFERENCES, flagged
from diffaug.study.report.exchange import Yardstick
from diffaug.study.report.fid import OVERALL, FidTable
from diffaug.study.report.figures import CI_NOTE, write_figures
from diffaug.study.report.findings import interval, pct, rate_text, yardstick_title
from diffaug.study.report.points import Difference, Point, at_largest_p, class_changes, label, lines, regimes, slopes
from diffaug.study.report.stats import Stat

DIGITS = 6  # fractions in summary.json


def _section(title: str, intro: str, body: list[str], figure: tuple[str, str] | None = None) -> list[str]:
    """A `## title` section: its introduction, its figure (alt text, file) if it has one, then `body`; no
    section at all where `body` is empty (the study measured nothing of it)."""
    if not body:
        return []
    head = [f"## {title}", "", intro, ""]
    return head + ([f"![{figure[0]}]({figure[1]})", ""] if figure else []) + body


def _table(columns: list[str], rows: list[str]) -> list[str]:
    """A Markdown table: the header row of `columns`, its rule, the rows, then a blank line."""
    return ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns), *rows, ""]


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _cell(s: Stat) -> str:
    return f"{pct(s.mean)} ± {100 * s.ci95:.1f} (n={s.n})" if s.ci95 is not None else f"{pct(s.mean)} (n=1)"


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, DIGITS)


def _stat_json(s: Stat) -> dict:
    return {"n": s.n, "mean": _round(s.mean), "std": _round(s.std), "ci95": _round(s.ci95)}


def _where_json(pt: Point) -> dict:
    out = {"source": pt.source, "p": pt.p, "regime": pt.regime, "augment": pt.augment}
    return dict(out, variant=pt.variant) if pt.variant else out


def _row_json(pt: Point, classes: list[str]) -> dict:
    per_class = {c: s.mean for c in classes if (s := pt.class_accuracy(c)) is not None}
    return {
        **_where_json(pt),
        **_stat_json(pt.accuracy),
        "per_class": {c: round(v, DIGITS) for c, v in per_class.items()},
        "experiments": sorted(r.name for r in pt.runs),
    }


def _balance_json(res: BalanceResult) -> dict:
    alone, balanced, d = res.balanced
    return {
        "source": res.point.source,
        "imbalance": res.ratio,
        "regime": res.point.regime,
        "balanced_accuracy": {
            "imbalanced_only": _stat_json(alone),
            "balanced": _stat_json(balanced),
            "difference": _stat_json(d) if d else None,
        },
        "per_class": {
            c: {
                "imbalanced_only": _round(a.mean) if a else None,
                "balanced": _round(b.mean) if b else None,
                "difference": _stat_json(x) if x else None,
            }
            for c, (a, b, x) in res.per_class().items()
        },
    }


def _difference_json(d: Difference) -> dict:
    return {**_where_json(d.point), "against": {"source": d.against.source, "p": d.against.p}, **_stat_json(d.stat)}


def _copies_json(res: dict) -> dict:
    return {
        **{k: res.get(k) for k in (*REFERENCES, "flag_share", "phash_distance", "feature_distance")},
        "flagged": flagged(res),
    }


def summary_json(analysis: Analysis) -> dict:
    exps = analysis.exps
    return {
        "budgets": budgets(analysis.points),
        "rows": [_row_json(pt, analysis.classes) for pt in analysis.points],
        "not_run": [{"name": r.name, "state": r.state, "setting": r.setting, "logs": r.logs} for r in exps.not_run],
        "adding": [_difference_json(d) for d in analysis.adding],
        "replacing": [_difference_json(d) for d in analysis.replacing],
        "warnings": [{"source": s, "unknown_words": w} for s, w in exps.unknown_words.items()],
        "fid": {"extractor": analysis.fid.extractor, "sources": analysis.fid.results},
        "copies": {s: _copies_json(res) for s, res in analysis.copies.items()},
        "clip": analysis.clip,
        "findings": analysis.findings,
        "balance": [_balance_json(res) for res in analysis.balance],
        "exchange": [_exchange_json(y) for y in analysis.exchange],
    }


def _number(x: float | str) -> float | str:
    """A rate or equivalent for JSON: rounded, or "below"/"above" the measured range; ±inf as strings."""
    if isinstance(x, str) or abs(x) == float("inf"):
        return x if isinstance(x, str) else ("below" if x < 0 else "above")
    return _round(x)


def _exchange_json(y: Yardstick) -> dict:
    return {
        "regime": y.regime,
        "augment": y.augment,
        "variant": y.variant,
        "yardstick": [{"real_per_class": r, **_stat_json(st)} for r, st in y.stats().items()],
        "points": [
            {
                "source": ex.source,
                "p": ex.p,
                "mode": ex.mode,
                "n_per_class": ex.n_per_class,
                "real_per_class": _round(ex.real),
                "synthetic_per_class": _round(ex.synthetic),
                "accuracy": _stat_json(ex.accuracy),
                "real_equivalent": _number(ex.equivalent),
                "rate": _number(ex.rate),
                "ci95": [_number(b) for b in ex.ci] if ex.ci else None,
                "seeds": ex.seeds,
            }
            for ex in y.exchanges
        ],
    }


def _yardstick_lines(y: Yardstick) -> list[str]:
    """A yardstick's accuracies and a row per point measured against it."""
    sizes = ", ".join(f"{r:g}: {_cell(st)}" for r, st in y.stats().items())
    out = [
        f"### {yardstick_title(y)}",
        "",
        f"Yardstick (r: accuracy): {sizes}.",
        "",
    ]
    rows = []
    for ex in y.exchanges:
        eq = f"{ex.equivalent:.1f}" if not isinstance(ex.equivalent, str) else "beyond the measured range"
        rows.append(
            f"| {ex.source} | {ex.p:g} | {ex.mode} | {ex.n_per_class or 'all'} | "
            f"{ex.real:g} + {ex.synthetic:g} | {_cell(ex.accuracy)} | {eq} | {rate_text(ex)} |"
        )
    columns = ["source", "p", "mix.mode", "k", "real + synthetic a class", "accuracy", "real-image equivalent"]
    return out + _table([*columns, "rate (real images per synthetic) [95% CI]"], rows)


def _exchange_lines(sticks: list[Yardstick]) -> list[str]:
    return _section(
        "Exchange rate: what a synthetic image is worth in real images",
        "The yardstick: runs without synthetic images at several real sizes r (real images a class), accuracy "
        "against log r fitted non-decreasing (isotonic) and linear between the sizes. A point reaching the "
        "yardstick's accuracy at R real images a class has the real-image equivalent R and the rate (R − r) / s "
        "per synthetic image; 95% CI: paired bootstrap over seeds. Outside the yardstick's accuracies the "
        "point is beyond the measured range (not extrapolated).",
        [line for y in sticks for line in _yardstick_lines(y)],
        ("exchange rate", "exchange.png"),
    )


def _warning(unknown: dict[str, list[str]]) -> list[str]:
    if not unknown:
        return []
    lines_ = [
        "> **⚠ Warning: the base model did not know some prompt words.** It drew something else for "
        "them, so these sources' images are not what their prompts ask for, and their results do not "
        "measure synthetic data of those classes:",
        ">",
    ]
    lines_ += [f"> - **{s}**: " + ", ".join(f"`{w}`" for w in words) for s, words in unknown.items()]
    return lines_ + [
        ">",
        "> Use a hub model (`base.model`; the README names models that fit a CPU or a small "
        "GPU) and rerun `dvc repro`.",
        "",
    ]


def _accuracy_tables(pts: list[Point]) -> list[str]:
    out = []
    for regime in regimes(pts):
        by_line = lines(pts, regime)
        ps = sorted({p for by_p in by_line.values() for p in by_p})
        out += [
            f"### {regime}",
            "",
            f"![accuracy vs p, {regime}](accuracy_vs_p_{regime}.png)",
            "",
            "| setting | " + " | ".join(f"p={p:g}" for p in ps) + " |",
            "|---|" + "---|" * len(ps),
        ]
        for series, by_p in by_line.items():
            out.append(
                f"| {label(*series)} | " + " | ".join(_cell(by_p[p].accuracy) if p in by_p else "" for p in ps) + " |"
            )
        out.append("")
    return out


def _difference_table(title: str, what: str, diffs: list[Difference]) -> list[str]:
    if not diffs:
        return _section(title, what, ["Not measured: no synthetic point has its baseline run with the same seeds.", ""])
    rows = [
        f"| {d.point.regime} | {label(*d.point.series)} | {d.point.p:g} | "
        f"{label(*d.against.series)} at p = {d.against.p:g} | {interval(d.stat)} | {d.stat.n} |"
        for d in diffs
    ]
    columns = ["regime", "source", "p", "against", "difference (points) [95% CI]", "n"]
    return _section(title, what, _table(columns, rows))


def _slope_lines(pts: list[Point]) -> list[str]:
    fits = slopes(pts)
    if not fits:
        return []
    out = [
        "How the loss grows with p: a least-squares line of accuracy against p (p = 0 included) per seed, "
        "its slope pooled over seeds.",
        "",
    ]
    rows = [f"| {regime} | {label(*series)} | {interval(stat)} | {stat.n} |" for regime, series, stat in fits]
    return out + _table(["regime", "source", "points of accuracy per unit of p [95% CI]", "n"], rows)


def _class_change_lines(rep: list[Difference], class_names: list[str]) -> list[str]:
    """Per regime, a class x source table of the class accuracy change at the source's largest p."""
    out = []
    for regime in dict.fromkeys(d.point.regime for d in rep):
        diffs = [d for d in at_largest_p(rep) if d.point.regime == regime]
        changes = [class_changes(d) for d in diffs]
        columns = ["class", *(f"{label(*d.point.series)} (p = {d.point.p:g})" for d in diffs)]
        rows = [
            f"| {c} | " + " | ".join(interval(ch[c]) if c in ch else "" for ch in changes) + " |" for c in class_names
        ]
        out += [f"Class accuracy at the largest p against p = 0, {regime} (points [95% CI]):", ""]
        out += _table(columns, rows)
    return out


def _fid_lines(table: FidTable) -> list[str]:
    return _section(
        f"FID and KID per class ({table.extractor} features)",
        "FID is biased on small sets; KID (×10³, mean ± std over subsets) is not: read them together. "
        "Bold: the lowest of the row. Numbers of different feature extractors are not comparable.",
        _fid_table(table) if table.results else [],
        ("FID per class", "fid_per_class.png"),
    )


def _fid_table(table: FidTable) -> list[str]:
    """Warnings of classes too small to measure, then FID and KID per class and source."""
    sources = list(table.results)
    warnings = [
        f"> **⚠ {s} has fewer than 2 images of class "
        + ", ".join(f"{c} ({n})" for c, n in res["too_few"].items())
        + "**: no FID or KID for them, and a mix of it at p > 0 stops there."
        for s, res in table.results.items()
        if res.get("too_few")
    ]
    rows = []
    for row in table.classes + [OVERALL]:
        best_fid, best_kid = table.best(row, "fid"), table.best(row, "kid")
        cells = []
        for s in sources:
            res = table.cell(s, row)
            fid = f"{res['fid']:.2f}" if "fid" in res else ""
            kid = f"{res['kid'] * 1e3:.2f} ± {res.get('kid_std', 0.0) * 1e3:.2f}" if "kid" in res else ""
            cells += [f"**{fid}**" if fid and s in best_fid else fid, f"**{kid}**" if kid and s in best_kid else kid]
        rows.append(f"| {'**overall**' if row == OVERALL else row} | " + " | ".join(cells) + " |")
    columns = ["class", *(f"{s} {measure}" for s in sources for measure in ("FID", "KID×10³"))]
    return warnings + ([""] if warnings else []) + _table(columns, rows)


def _share(res: dict, reference: str) -> str:
    """`12.0% (pHash 10.0%, features 4.0%)`: the union and each test's share."""
    r = res.get(reference) or {}
    if "share" not in r:
        return ""
    return f"{pct(r['share'])}% (pHash {pct(r.get('phash', 0.0))}%, features {pct(r.get('feature', 0.0))}%)"


def _copies_lines(results: dict[str, dict]) -> list[str]:
    rows = []
    for s, res in results.items():
        flag = f"**yes** (> {pct(res['flag_share'])}%)" if flagged(res) else "no"
        rows.append(f"| {s} | {_share(res, 'test')} | {_share(res, 'original')} | {flag} |")
    table = ["| source | of d_test | of d_original | flagged |", "|---|---|---|---|", *rows, ""]
    return _section(
        "Copies and leaks",
        "Share of each source's images that are near duplicates of a test image (a leak into training: `mix` "
        "leaves them out with `mix.exclude_test_copies`) or of a `d_original` image (a redrawn training image), "
        "of any class: pHash within `copies.phash_distance` bits or FID features within "
        "`copies.feature_distance` (cosine), either test counting. Flagged: a test share above `copies.flag_share`.",
        table if rows else [],
    )


def _verdict(diff: Stat | None) -> str:
    if diff is None:
        return "not measured (no seed has both runs)"
    if diff.sign() is None:
        return f"{interval(diff)}: one seed, so no verdict; run more seeds"
    return {1: "balancing helped", -1: "balancing hurt", 0: "no clear difference"}[
        diff.sign()
    ] + f" ({interval(diff)} points of balanced accuracy, n = {diff.n})"


def _balance_table(res: BalanceResult) -> list[str]:
    """One balance point against the imbalanced runs alone: balanced accuracy, accuracy and each class."""
    alone, balanced, diff = res.balanced
    rows = [
        f"| **balanced accuracy** | {_cell(alone)} | {_cell(balanced)} | {interval(diff) if diff else ''} |",
        f"| accuracy | {_cell(res.against.accuracy)} | {_cell(res.point.accuracy)} | "
        f"{interval(res.accuracy) if res.accuracy else ''} |",
    ]
    for c, (a, b, d) in res.per_class().items():
        rows.append(f"| {c} | {_cell(a) if a else ''} | {_cell(b) if b else ''} | {interval(d) if d else ''} |")
    columns = ["", "imbalanced only", f"balanced with {res.point.source}", "difference (points) [95% CI]"]
    heading = f"### {res.point.source}, imbalance {res.ratio}, {res.point.regime}: {_verdict(diff)}"
    return [heading, ""] + _table(columns, rows)


def _balance_lines(results: list[BalanceResult]) -> list[str]:
    return _section(
        "Class-imbalance filling",
        "An imbalanced `d_original` (`split.imbalance`) alone against the same real images with every class "
        "topped up by synthetic ones to the largest class (`mix.mode=balance`). Test accuracy in %, mean ± 95% "
        "CI over seeds; differences paired by seed. Balanced accuracy is the mean of the per-class accuracies.",
        [line for res in results for line in _balance_table(res)],
        ("balanced accuracy", "balanced_accuracy.png"),
    )


def _not_run_lines(not_run: list[NotRun]) -> list[str]:
    rows = [f"| {r.name} | {r.state} | {r.setting} | `{r.logs}` |" for r in not_run]
    return _section(
        "Not run",
        f"{_count(len(not_run), 'experiment')} did not finish: in no table and no figure. Read a log with "
        "the command beside it.",
        ["| experiment | state | setting | log |", "|---|---|---|---|", *rows, ""] if rows else [],
    )


def budgets(pts: list[Point]) -> dict[str, list[dict]]:
    """Per regime, the training budgets its runs used (one, unless a variant differs in it)."""
    out: dict[str, list[dict]] = {}
    for pt in pts:
        for r in pt.runs:
            steps, batch = r.other.get("train.steps"), r.other.get("train.batch_size")
            b = (
                {"unit": "steps", "steps": steps, "images_seen": steps * batch if batch else None}
                if steps
                else {"unit": "epochs", "epochs": r.other.get("train.epochs")}
            )
            if b not in out.setdefault(pt.regime, []):
                out[pt.regime].append(b)
    return out


def _budget_line(pts: list[Point]) -> list[str]:
    parts, fixed_epochs = [], False
    for regime, bs in budgets(pts).items():
        words = []
        for b in bs:
            if b["unit"] == "steps":
                seen = f" ({b['images_seen']:,} images seen)" if b["images_seen"] else ""
                words.append(f"{b['steps']} SGD steps{seen}, whatever the mix")
            else:
                fixed_epochs = True
                words.append(f"{b['epochs']} epochs")
        parts.append(f"{regime}: " + " / ".join(words))
    if not parts:
        return []
    out = "**Training budget**: " + "; ".join(parts) + "."
    if fixed_epochs:
        out += (
            " A fixed-epoch budget gives a mix with fewer images fewer optimiser steps, so differences between "
            "mixes confound data with steps (`train.steps` sets an equal budget)."
        )
    return [out + " Runs with different budgets are never pooled or paired.", ""]


def _host_line(exps: Experiments) -> list[str]:
    hosts = {tuple((k, r.other[k]) for k in sorted(r.other) if k.startswith("host.")) for r in exps.runs}
    if len(hosts) < 2:
        return []
    return [
        "> **⚠ The runs come from different CPUs, torch versions or thread counts**, which change CPU float "
        "results: their lines are kept apart (labelled `host.*`), never pooled as seeds.",
        "",
    ]


def _head_lines(analysis: Analysis) -> list[str]:
    """The title, what was pooled into what, and how to read the numbers."""
    pts, exps = analysis.points, analysis.exps
    n_runs = sum(len(pt.runs) for pt in pts)
    n_imbalance = len(exps.runs) - n_runs  # their own table: `dvc exp show` lists both
    head = f"{_count(n_runs, 'finished experiment')} pooled over seeds into {_count(len(pts), 'point')}"
    if n_imbalance:
        head = (
            f"{_count(len(exps.runs), 'finished experiment')}: {n_runs} pooled over seeds into "
            f"{_count(len(pts), 'point')} of the p grid, {n_imbalance} in the class-imbalance experiment "
            f"([Class-imbalance filling](#class-imbalance-filling))"
        )
    not_run = f"; {_count(len(exps.not_run), 'experiment')} did not finish (see [Not run](#not-run))."
    return [
        "# Study report",
        "",
        head + (not_run if exps.not_run else "."),
        "Test accuracy in %: mean ± half-width of the 95% Student-t confidence interval over seeds "
        "(n = seeds; one seed gives no interval). Differences are in points of accuracy, paired by seed "
        "(`train.seed`, `mix.seed`), with their 95% CI.",
        "",
    ]


def _accuracy_lines(pts: list[Point]) -> list[str]:
    if not pts:
        return []
    return [
        "## Accuracy vs p (the paper's Figures 3-5)",
        "",
        "![accuracy vs p](accuracy_vs_p.png)",
        "",
        f"Lines: each synthetic source; only original (the real part alone); RandAugment and zero-shot "
        f"CLIP as horizontal lines. {CI_NOTE[0].upper() + CI_NOTE[1:]}.",
        "",
    ] + _accuracy_tables(pts)


def _class_lines(rep: list[Difference], class_names: list[str], figures: list[str]) -> list[str]:
    class_figures = [f for f in figures if f.startswith("class_accuracy_")]
    return _section(
        "Class-wise accuracy vs p (the paper's Figure 6)",
        "A panel per class, a line per source: mean over seeds.",
        [line for f in class_figures for line in (f"![class-wise accuracy]({f})", "")]
        + _class_change_lines(rep, class_names),
    )


def summary_md(analysis: Analysis, figures: list[str]) -> str:
    pts, exps, rep = analysis.points, analysis.exps, analysis.replacing
    lines_ = _head_lines(analysis) + _budget_line(pts) + _host_line(exps) + _warning(exps.unknown_words)
    lines_ += ["## Findings", ""] + [f"- {f}" for f in analysis.findings] + [""]
    lines_ += _accuracy_lines(pts)
    lines_ += _difference_table(
        "Adding: synthetic images on top of the same real images",
        "A source at p against only original at the same p (both train on the same (1 − p)·n real images).",
        analysis.adding,
    )
    lines_ += _difference_table(
        "Replacing: real images replaced by synthetic ones", "A source at p against p = 0 (all n images real).", rep
    )
    lines_ += _slope_lines(pts) + _class_lines(rep, analysis.classes, figures)
    lines_ += _exchange_lines(analysis.exchange) + _fid_lines(analysis.fid) + _copies_lines(analysis.copies)
    lines_ += _balance_lines(analysis.balance)
    if analysis.clip is not None:
        lines_ += ["## Zero-shot CLIP", "", f"{pct(analysis.clip)}% test accuracy.", ""]
    lines_ += _not_run_lines(exps.not_run)
    return "\n".join(lines_)


def _build(exps: Experiments, out: Path) -> list[str]:
    """Every file of the report into the empty folder `out`; returns their names, summary.json last."""
    analysis = analyse(exps)
    figures = [p.name for p in write_figures(analysis, out)] if analysis.points else []
    (out / "summary.md").write_text(summary_md(analysis, figures))
    names = figures + ["summary.md", "summary.json"]
    (out / "summary.json").write_text(json.dumps(dict(summary_json(analysis), files=names), indent=2) + "\n")
    return names


def _previous_files(summary: Path) -> list[str]:
    """The files a previous report listed: bare names only, never a path out of the folder."""
    try:
        names = json.loads(summary.read_text()).get("files", [])
    except (OSError, ValueError, AttributeError):
        return []
    return [n for n in names if isinstance(n, str) and n and Path(n).name == n]


def write_report(exps: Experiments, out: Path) -> list[Path]:
    """Write the report to `out`. It is built in a temporary folder beside it and moved in only when
    complete; the files of the previous report (listed in its summary.json) are removed first, so no
    stale figure survives."""
    if not exps.runs and not exps.not_run:
        raise DiffaugError("no experiment has metrics/evaluate.json yet; run `dvc repro` or queue experiments first.")
    out = out.resolve()
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        names = _build(exps, tmp)
        out.mkdir(parents=True, exist_ok=True)
        for name in _previous_files(out / "summary.json"):
            (out / name).unlink(missing_ok=True)
        for name in names:
            (tmp / name).replace(out / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return [out / name for name in names]
