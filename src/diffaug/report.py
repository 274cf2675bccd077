"""The study report: every experiment's params and metrics -> the paper's figures and tables.

    python -m diffaug.report [--out reports] [--input exp.json]

Reads `dvc exp show --json` (or a saved copy of it), one row per experiment, and writes PNGs and
`summary.md` to `--out`: accuracy vs p per synthetic source with the "only original" line and the
baselines (the paper's Figures 3-5, one per training regime), class-wise accuracy vs p (Figure 6)
and the per-class FID/KID table (Table 1). Several seeds of one setting give mean ± std.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from diffaug.errors import DiffaugError

SOURCES = ("vanilla", "dreambooth", "textual_inversion")
OVERALL = "overall"


# ------------------------------------------------------------------------------------------------
# Reading: dvc exp show --json -> rows
# ------------------------------------------------------------------------------------------------

def read_exp_show(repo: Path = Path(".")) -> list[dict]:
    try:
        done = subprocess.run(["dvc", "exp", "show", "--json"], cwd=repo, capture_output=True, text=True)
    except FileNotFoundError:
        raise DiffaugError("dvc is not installed here; run `pip install -r requirements.txt`.") from None
    if done.returncode:
        raise DiffaugError(f"`dvc exp show --json` failed ({done.stderr.strip().splitlines()[-1:]}); "
                           "run the report from the repository root.")
    return json.loads(done.stdout)


def _states(states: list[dict]):
    """Every experiment state below the baselines of `dvc exp show --json`, baselines included."""
    for state in states or []:
        yield state
        for exp_range in state.get("experiments") or []:
            yield from _states(exp_range.get("revs") or [])


STUDY_KEYS = ("mix.source", "mix.p", "train.regime", "train.augment", "train.seed")


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _row(state: dict) -> dict | None:
    data = state.get("data") or {}
    params = ((data.get("params") or {}).get("params.yaml") or {}).get("data") or {}
    metrics = {path.replace("\\", "/"): (result or {}).get("data") or {}
               for path, result in (data.get("metrics") or {}).items()}
    evaluate = metrics.get("metrics/evaluate.json") or {}
    if evaluate.get("accuracy") is None:  # queued, running or failed: nothing to report
        return None
    mix, train = params.get("mix") or {}, params.get("train") or {}
    return {
        "name": state.get("name") or str(state.get("rev", ""))[:7],
        "source": mix.get("source", "none"), "p": float(mix.get("p", 0.0)),
        "regime": train.get("regime", "scratch"), "augment": train.get("augment", "standard"),
        "seed": train.get("seed", 0),
        "accuracy": float(evaluate["accuracy"]), "per_class": evaluate.get("per_class_accuracy") or {},
        "fid": {s: metrics[f"metrics/fid/{s}.json"] for s in SOURCES if metrics.get(f"metrics/fid/{s}.json")},
        "clip": metrics.get("metrics/clip.json") or {},
        # every other param: runs that differ in one of them are not seeds of one setting
        "other": {k: v for k, v in _flatten(params).items() if k not in STUDY_KEYS},
    }


def rows_from_exp_show(states: list[dict]) -> list[dict]:
    """One row per experiment with results; the workspace and a baseline that repeat an
    experiment's params and metrics exactly are the same measurement and count once."""
    rows, seen = [], set()
    for state in _states(states):
        row = _row(state)
        if row is None:
            continue
        key = json.dumps({k: v for k, v in row.items() if k != "name"}, sort_keys=True)
        if key not in seen:
            seen.add(key)
            rows.append(row)
    return rows


# ------------------------------------------------------------------------------------------------
# Writing: rows -> figures and summary.md (pure: no DVC)
# ------------------------------------------------------------------------------------------------

def label(source: str, augment: str, variant: str = "") -> str:
    if source == "none":
        text = "RandAugment baseline (only original)" if augment == "randaugment" else "only original"
    else:
        text = source if augment != "randaugment" else f"{source} + RandAugment"
    return f"{text} [{variant}]" if variant else text


def mark_variants(rows: list[dict]) -> list[dict]:
    """Name the params besides the study's that differ between rows (e.g. train.epochs=1), so
    runs of different settings form separate lines instead of being averaged as seeds."""
    keys = sorted({k for r in rows for k in r.get("other", {})})
    varying = [k for k in keys if len({json.dumps(r.get("other", {}).get(k)) for r in rows}) > 1]
    return [dict(r, variant=", ".join(f"{k}={r.get('other', {}).get(k)}" for k in varying)) for r in rows]


def mean_std(values: list[float]) -> tuple[float, float, int]:
    """Mean and sample std (0 for a single seed) and the number of seeds."""
    a = np.asarray(values, dtype=np.float64)
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0, len(a)


def fmt(mean: float, std: float, n: int, scale: float = 100.0, digits: int = 1) -> str:
    text = f"{mean * scale:.{digits}f}"
    return f"{text} ± {std * scale:.{digits}f} (n={n})" if n > 1 else text


def _series(rows: list[dict]) -> dict[tuple[str, str, str], dict[float, list[dict]]]:
    """(source, augment, variant) -> p -> rows (the seeds), sources in the study's order."""
    order = {s: i for i, s in enumerate(("none",) + SOURCES)}
    out: dict = defaultdict(lambda: defaultdict(list))
    for r in sorted(rows, key=lambda r: (order.get(r["source"], 9), r["source"], r["augment"] != "standard",
                                         r["augment"], r["variant"], r["p"])):
        out[(r["source"], r["augment"], r["variant"])][r["p"]].append(r)
    return out


def fid_table(rows: list[dict]) -> tuple[dict[str, dict], str | None]:
    """Per source, the FID/KID results of the first experiment that has them; all must share one
    feature extractor (numbers of two networks are on different scales)."""
    table: dict[str, dict] = {}
    for r in rows:
        for source, result in r["fid"].items():
            table.setdefault(source, result)
    extractors = {res.get("extractor_id", res.get("extractor")) for res in table.values()}
    if len(extractors) > 1:
        raise DiffaugError(f"the FID results were computed with different feature extractors ({sorted(extractors)}); "
                           "rerun `dvc repro` so every fid@<source> uses the same fid.features.")
    extractor = next(iter(table.values())).get("extractor") if table else None
    return table, extractor


def _plot_accuracy(ax, series, clip_accuracy):
    for (source, augment, variant), by_p in series.items():
        ps = sorted(by_p)
        stats = [mean_std([r["accuracy"] for r in by_p[p]]) for p in ps]
        means, stds = np.array([s[0] for s in stats]) * 100, np.array([s[1] for s in stats]) * 100
        style = {"color": "black", "linestyle": "--"} if source == "none" and augment != "randaugment" else \
            {"color": "grey", "linestyle": ":"} if source == "none" else {}
        if len(ps) == 1 and source == "none":  # a baseline measured at one p: a horizontal line
            ax.axhline(means[0], label=label(source, augment, variant), **style)
        else:
            ax.errorbar(ps, means, yerr=stds, marker="o", capsize=3, label=label(source, augment, variant), **style)
    if clip_accuracy is not None:
        ax.axhline(clip_accuracy * 100, color="tab:purple", linestyle="-.", label="zero-shot CLIP")
    ax.set_xlabel("p (share of synthetic images)")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def write_report(rows: list[dict], out: Path) -> list[Path]:
    """Figures and summary.md for `rows` (dicts as `rows_from_exp_show` makes); returns the files."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not rows:
        raise DiffaugError("no experiment has metrics/evaluate.json yet; run `dvc repro` or queue experiments first.")
    rows = mark_variants(rows)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    clip = next((r["clip"] for r in rows if r["clip"].get("accuracy") is not None), None)
    clip_accuracy = clip["accuracy"] if clip else None
    lines = ["# Study report", "",
             f"{len(rows)} experiments. Test accuracy in %, mean ± sample std over seeds where n > 1.", ""]

    by_regime: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_regime[r["regime"]].append(r)
    for regime in sorted(by_regime):
        series = _series(by_regime[regime])
        fig, ax = plt.subplots(figsize=(6.4, 4.4))
        _plot_accuracy(ax, series, clip_accuracy)
        ax.set_title(f"Accuracy vs p, {regime}")
        path = out / f"accuracy_vs_p_{regime}.png"
        fig.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(fig)
        written.append(path)

        ps = sorted({r["p"] for r in by_regime[regime]})
        lines += [f"## Accuracy vs p: {regime}", "", f"![accuracy vs p, {regime}]({path.name})", "",
                  "| source | " + " | ".join(f"p={p:g}" for p in ps) + " |",
                  "|---|" + "---|" * len(ps)]
        for (source, augment, variant), by_p in series.items():
            cells = [fmt(*mean_std([r["accuracy"] for r in by_p[p]])) if p in by_p else "" for p in ps]
            lines.append(f"| {label(source, augment, variant)} | " + " | ".join(cells) + " |")
        lines.append("")

        # Figure 6: per-class accuracy vs p, one panel per series that varies p.
        panels = [(k, v) for k, v in series.items() if len(v) > 1]
        if panels:
            fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.8), squeeze=False, sharey=True)
            for ax, ((source, augment, variant), by_p) in zip(axes[0], panels):
                ps_s = sorted(by_p)
                classes = list(by_p[ps_s[0]][0]["per_class"])
                for c in classes:
                    means = [mean_std([r["per_class"][c] for r in by_p[p] if r["per_class"].get(c) is not None])[0]
                             * 100 for p in ps_s]
                    ax.plot(ps_s, means, marker=".", label=c)
                ax.set_title(label(source, augment, variant), fontsize=9)
                ax.set_xlabel("p")
                ax.grid(alpha=0.3)
            axes[0][0].set_ylabel("class accuracy (%)")
            axes[0][-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1, 0.5))
            fig.suptitle(f"Class-wise accuracy vs p, {regime}")
            path = out / f"class_accuracy_{regime}.png"
            fig.savefig(path, dpi=100, bbox_inches="tight")
            plt.close(fig)
            written.append(path)
            lines += [f"![class-wise accuracy, {regime}]({path.name})", ""]

    table, extractor = fid_table(rows)
    if table:
        sources = [s for s in SOURCES if s in table]
        classes = list(table[sources[0]]["per_class"])
        lines += [f"## FID and KID per class ({extractor} features)", "",
                  "FID is biased on small sets; KID (×10³, mean ± std over subsets) is unbiased. "
                  "Numbers of different feature extractors are not comparable.", "",
                  "| class | " + " | ".join(f"{s} FID | {s} KID×10³" for s in sources) + " |",
                  "|---|" + "---|---|" * len(sources)]
        for c in classes + [OVERALL]:
            cells = []
            for s in sources:
                res = table[s] if c == OVERALL else table[s]["per_class"].get(c, {})
                cells += [f"{res['fid']:.2f}" if "fid" in res else "",
                          f"{res['kid'] * 1e3:.2f} ± {res['kid_std'] * 1e3:.2f}" if "kid" in res else ""]
            lines.append(f"| {'**overall**' if c == OVERALL else c} | " + " | ".join(cells) + " |")
        lines.append("")
        fig, ax = plt.subplots(figsize=(max(6.4, 0.6 * len(classes) * len(sources)), 3.8))
        width = 0.8 / len(sources)
        for i, s in enumerate(sources):
            ax.bar(np.arange(len(classes)) + i * width, [table[s]["per_class"][c]["fid"] for c in classes],
                   width, label=f"{s} (overall {table[s]['fid']:.1f})")
        ax.set_xticks(np.arange(len(classes)) + 0.4 - width / 2, classes, rotation=45, ha="right")
        ax.set_ylabel(f"FID ({extractor} features)")
        ax.legend(fontsize=8)
        path = out / "fid_per_class.png"
        fig.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(fig)
        written.append(path)
        lines += [f"![FID per class]({path.name})", ""]

    if clip:
        lines += ["## Zero-shot CLIP", "",
                  f"{clip['accuracy'] * 100:.1f}% with {clip.get('model')} (prompt \"{clip.get('template')}\").", ""]
    summary = out / "summary.md"
    summary.write_text("\n".join(lines))
    written.append(summary)
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m diffaug.report", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("reports"), help="folder for the PNGs and summary.md")
    parser.add_argument("--input", type=Path, help="a saved `dvc exp show --json` (default: run it)")
    args = parser.parse_args(argv)
    states = json.loads(args.input.read_text()) if args.input else read_exp_show()
    rows = rows_from_exp_show(states)
    for path in write_report(rows, args.out):
        print(path)
    print(f"report: {len(rows)} experiments", file=sys.stderr)


if __name__ == "__main__":
    from diffaug.cli import run

    run(main)
