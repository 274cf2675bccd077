"""The exchange rate: a yardstick of only-original runs by real size, the real-image equivalent of a
point with synthetic images, its rate with a paired bootstrap CI over seeds, and the report's table."""

from __future__ import annotations

import math

import pytest

from diffaug.study.experiments import Run
from diffaug.study.report.exchange import ABOVE, BELOW, fit, yardsticks

CLASSES = ["zero", "one"]
OFFSETS = (-0.004, 0.0, 0.004)  # per seed: the mean over the three seeds is the exact value


def truth(r: float) -> float:
    return 0.5 + 0.1 * math.log(r)  # the yardstick: linear in log r


def run(accuracy, real, synthetic=0, seed=0, source="none", p=0.0, mode="replace", k=None, regime="scratch", **other):
    """A finished run with `real` and `synthetic` images a class (metrics/mix.json holds the totals)."""
    mix = {"real_images": real * len(CLASSES), "synthetic_images": synthetic * len(CLASSES)}
    return Run(
        name=f"{source}-{p}-{k}-{seed}",
        source=source,
        p=p,
        regime=regime,
        augment="standard",
        mode=mode,
        seed=(seed, seed),
        accuracy=accuracy,
        per_class={c: accuracy for c in CLASSES},
        other={"classes": CLASSES, "mix.n_per_class": k, **other},
        metrics={"metrics/mix.json": mix, "metrics/evaluate.json": {"accuracy": accuracy}},
    )


def yardstick_runs(sizes=(2, 5, 10, 26, 51, 102), curve=truth, **kw):
    return [run(curve(r) + o, r, seed=s, k=None if r > 10 else r, **kw) for r in sizes for s, o in enumerate(OFFSETS)]


def test_a_point_on_a_known_yardstick_gets_its_rate_and_a_ci_that_holds_it():
    # 51 real + 51 synthetic images a class, as accurate as 76.5 real ones: a synthetic image is worth 0.5
    point = [run(truth(76.5) + o, 51, 51, seed=s, source="vanilla", p=0.5) for s, o in enumerate(OFFSETS)]
    [y] = yardsticks(yardstick_runs() + point)
    assert sorted(y.by_r) == [2, 5, 10, 26, 51, 102]  # mix.n_per_class is a size, not a variant
    assert y.variant == "" and y.regime == "scratch"
    [ex] = y.exchanges
    assert (ex.source, ex.p, ex.real, ex.synthetic, ex.seeds) == ("vanilla", 0.5, 51, 51, 3)
    assert ex.equivalent == pytest.approx(76.5) and ex.rate == pytest.approx(0.5)
    assert ex.ci[0] <= 0.5 <= ex.ci[1] and ex.ci[1] - ex.ci[0] < 0.2 and ex.coarse and ex.sign() == 1
    assert yardsticks(yardstick_runs() + point)[0].exchanges[0].ci == ex.ci  # a fixed RNG: the same report


def test_beyond_the_measured_range_is_said_not_extrapolated():
    above = [run(truth(102) + 0.05 + o, 26, 26, seed=s, source="img2img", p=0.5) for s, o in enumerate(OFFSETS)]
    below = [run(truth(2) - 0.05 + o, 51, 51, seed=s, source="vanilla", p=0.5) for s, o in enumerate(OFFSETS)]
    ex = {e.source: e for e in yardsticks(yardstick_runs() + above + below)[0].exchanges}
    assert ex["img2img"].rate == ex["img2img"].equivalent == ABOVE and ex["img2img"].sign() is None
    assert ex["vanilla"].rate == BELOW
    assert ex["img2img"].ci[1] == math.inf  # every resample is above: the CI is open on that side


def test_a_non_monotone_yardstick_is_fitted_non_decreasing():
    by_r = {2: {0: 0.6}, 5: {0: 0.7}, 10: {0: 0.65}, 26: {0: 0.8}}
    curve = fit(by_r)
    assert list(curve.accuracy) == pytest.approx([0.6, 0.675, 0.675, 0.8])  # 5 and 10 pooled
    assert curve.equivalent(0.675) == pytest.approx(5)  # the smallest r that reaches it
    t = (0.74 - 0.675) / 0.125
    assert curve.equivalent(0.74) == pytest.approx(math.exp(math.log(10) + t * math.log(2.6)))
    assert curve.equivalent(0.59) == BELOW and curve.equivalent(0.81) == ABOVE
    assert fit({5: {0: 0.7}}) is None  # one size is no curve


def test_few_shot_adding_and_a_point_within_noise():
    # k = 5 real + 5 synthetic a class (mix.mode=add), as good as 7.5 real: worth 0.5; a second source's
    # seeds straddle the 5-real accuracy: within noise
    add = [run(truth(7.5) + o, 5, 5, seed=s, source="vanilla", p=1.0, mode="add", k=5) for s, o in enumerate(OFFSETS)]
    noisy = [
        run(truth(5) + o, 5, 5, seed=s, source="img2img", p=1.0, mode="add", k=5)
        for s, o in enumerate((-0.05, 0.0, 0.06))
    ]
    ex = {e.source: e for e in yardsticks(yardstick_runs() + add + noisy)[0].exchanges}
    assert (ex["vanilla"].mode, ex["vanilla"].n_per_class) == ("add", 5)
    assert ex["vanilla"].rate == pytest.approx(0.5) and ex["vanilla"].sign() == 1
    assert ex["img2img"].sign() == 0


def test_groups_split_by_regime_and_other_params_and_need_two_sizes():
    frozen = yardstick_runs(regime="frozen")
    epochs = yardstick_runs(sizes=(5, 102), **{"train.epochs": 1})
    lonely = [run(0.9, 102, seed=s, regime="finetune") for s in range(2)]
    ys = yardsticks(yardstick_runs(**{"train.epochs": 15}) + frozen + epochs + lonely)
    assert [(y.regime, y.variant, sorted(y.by_r)) for y in ys] == [
        ("scratch", "train.epochs=1", [5, 102]),
        ("scratch", "train.epochs=15", [2, 5, 10, 26, 51, 102]),
        ("frozen", "", [2, 5, 10, 26, 51, 102]),
    ]
    assert yardsticks([r for r in lonely]) == []  # runs without metrics/mix.json are no yardstick either


def test_the_report_tables_plots_and_words_the_exchange_rate(tmp_path):
    import json

    from test_report import exp_range, rev

    from diffaug.study.experiments import experiments
    from diffaug.study.report.summary import write_report

    def entry(source, p, seed, accuracy, real, synthetic, k=None, mode="replace"):
        prm = {
            "classes": CLASSES,
            "mix": {"source": source, "p": p, "seed": seed, "mode": mode, "n_per_class": k},
            "train": {"regime": "scratch", "augment": "standard", "seed": seed, "epochs": 15},
        }
        mets = {
            "metrics/evaluate.json": {"accuracy": accuracy, "per_class_accuracy": {c: accuracy for c in CLASSES}},
            "metrics/mix.json": {"real_images": 2 * real, "synthetic_images": 2 * synthetic},
        }
        return rev(f"{source}-{p}-{k}-{seed}", prm, mets)

    revs = []
    for s, o in enumerate(OFFSETS):
        revs += [entry("none", 0.0, s, truth(r) + o, r, 0, k=r) for r in (2, 5, 10)]
        revs += [
            entry("none", 0.0, s, truth(102) + o, 102, 0),
            entry("none", 0.5, s, truth(51) + o, 51, 0),
            entry("vanilla", 0.5, s, truth(76.5) + o, 51, 51),
            entry("img2img", 1.0, s, truth(102) + 0.1, 0, 102),  # no real image left, above the range
            entry("vanilla", 1.0, s, truth(7.5) + o, 5, 5, k=5, mode="add"),
        ]
    files = write_report(
        experiments([rev("main", {}, {}) | {"experiments": [exp_range(r, "success") for r in revs]}]), tmp_path
    )
    assert tmp_path / "exchange.png" in files
    md = (tmp_path / "summary.md").read_text()
    assert "## Exchange rate" in md and "| vanilla | 0.5 | replace | all | 51 + 51 |" in md
    assert "beyond the measured range" in md
    [y] = json.loads((tmp_path / "summary.json").read_text())["exchange"]
    assert [row["real_per_class"] for row in y["yardstick"]] == [2, 5, 10, 51, 102]
    vanilla = next(pt for pt in y["points"] if pt["source"] == "vanilla" and pt["mode"] == "replace")
    assert vanilla["rate"] == pytest.approx(0.5) and vanilla["ci95"][0] <= 0.5 <= vanilla["ci95"][1]
    assert next(pt for pt in y["points"] if pt["source"] == "img2img")["rate"] == "above"
    words = [f for f in json.loads((tmp_path / "summary.json").read_text())["findings"] if "vanilla image" in f]
    assert len(words) == 1 and "one vanilla image is worth 0.50 [" in words[0] and "at p = 0.5" in words[0]
    assert "5 real + 5 synthetic a class (mix.mode=add)" in words[0] and "coarse: 3 seeds" in words[0]
    findings = json.loads((tmp_path / "summary.json").read_text())["findings"]
    assert any(
        "img2img at p = 1 is beyond the measured range (better than the most real images measured)" in f
        for f in findings
    )
