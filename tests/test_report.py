"""The study report: pooling seeds, paired differences, reading `dvc exp show --json` (a fabricated
table in DVC 3.67's shape, and a real one from a throwaway git + DVC repo), figures and summaries."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

import diffaug
from diffaug.errors import DiffaugError
from diffaug.study.experiments import experiments, read_exp_show
from diffaug.study.report.command import main
from diffaug.study.report.points import pool_points
from diffaug.study.report.stats import paired, pool, slope
from diffaug.study.report.summary import write_report

CLASSES = ["zero", "one"]
SRC = Path(diffaug.__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------------
# Statistics
# ------------------------------------------------------------------------------------------------


def test_two_seeds_pool_into_mean_sample_std_and_a_student_t_interval():
    s = pool([0.80, 0.83])
    assert (s.n, s.mean) == (2, pytest.approx(0.815))
    assert s.std == pytest.approx(0.03 / np.sqrt(2))  # sample std (ddof 1), not 0.015
    assert s.ci95 == pytest.approx(12.7062047 * s.std / np.sqrt(2))  # t(0.975, 1 dof), not 1.96
    assert pool([0.7, 0.8, 0.9]).ci95 == pytest.approx(4.3026527 * 0.1 / np.sqrt(3))  # t(0.975, 2 dof)
    one = pool([0.9])
    assert (one.n, one.mean, one.std, one.ci95, one.sign()) == (1, 0.9, None, None, None)


def test_paired_differences_pair_by_seed_and_the_slope_needs_three_p():
    a, b = {(0, 0): 0.90, (1, 1): 0.95, (2, 2): 0.5}, {(1, 1): 0.93, (0, 0): 0.88}
    d = paired(a, b)  # seed (2, 2) has no partner
    assert (d.n, d.mean, d.std, d.ci95, d.sign()) == (2, pytest.approx(0.02), pytest.approx(0.0), pytest.approx(0.0), 1)
    assert paired(a, {(5, 5): 0.1}) is None
    assert pool([0.01, -0.02, 0.0]).sign() == 0  # the interval holds 0: within noise
    line = {0.0: {0: 0.9, 1: 0.92}, 0.5: {0: 0.85, 1: 0.86}, 1.0: {0: 0.7, 1: 0.74}}
    s = slope(line)
    assert s.n == 2 and s.mean == pytest.approx(
        np.mean([np.polyfit([0, 0.5, 1], [0.9, 0.85, 0.7], 1)[0], np.polyfit([0, 0.5, 1], [0.92, 0.86, 0.74], 1)[0]])
    )
    assert slope({0.0: {0: 0.9}, 1.0: {0: 0.7}}) is None


# ------------------------------------------------------------------------------------------------
# A fabricated `dvc exp show --json` in DVC 3.67's shape
# ------------------------------------------------------------------------------------------------


def fid_result(source, fid, extractor="reference"):
    per = {
        c: {"fid": fid + 10 * i, "kid": 0.01 * (i + 1) + fid / 1e4, "kid_std": 0.002, "original": 50, "synthetic": 40}
        for i, c in enumerate(CLASSES)
    }
    return {
        "source": source,
        "extractor": extractor,
        "extractor_id": f"{extractor}:abc",
        "fid": fid,
        "kid": 0.02 + fid / 1e4,
        "kid_std": 0.003,
        "original": 100,
        "synthetic": 80,
        "per_class": per,
    }


def params(source, p, seed, regime="scratch", augment="standard", mode="replace", epochs=15, jobs=1):
    return {
        "classes": CLASSES,
        "mix": {"source": source, "p": p, "seed": seed, "mode": mode},
        "train": {"regime": regime, "augment": augment, "seed": seed, "epochs": epochs},
        "study": {"jobs": jobs},
    }


def metrics(accuracy, hurt=0.01, unknown=("triangle",)):
    out = {
        "metrics/evaluate.json": {
            "accuracy": accuracy,
            "per_class_accuracy": {"zero": accuracy + hurt, "one": accuracy - hurt},
        },
        "metrics/generate/vanilla.json": {"images": 20, "unknown_words": list(unknown)},
        "metrics/generate/dreambooth.json": {"images": 20, "unknown_words": []},
    }
    for source, fid in (("vanilla", 40.0), ("img2img", 30.0), ("dreambooth", 43.0)):
        out[f"metrics/fid/{source}.json"] = fid_result(source, fid)
    return out


def rev(name, prm, mets, error=None):
    sha = (name.encode().hex() + "0" * 40)[:40]
    return {
        "rev": sha,
        "name": name,
        "error": error,
        "experiments": None,
        "data": {
            "rev": sha,
            "timestamp": None,
            "params": {"params.yaml": {"data": prm}},
            "metrics": {k: {"data": v} for k, v in mets.items()},
            "deps": {},
            "outs": {},
            "meta": {},
        },
    }


def exp_range(r, state):
    executor = None if state is None else {"state": state, "name": "dvc-task", "local": {}}
    return {"revs": [r], "executor": executor, "name": r["name"]}


COMMIT = params("none", 0.0, 0), metrics(0.90)  # the committed run: only original at p = 0, seed 0


def exp_show():
    finished = []
    for s in (0, 1):
        finished += [
            rev(f"none-0.0-{s}", *COMMIT) if s == 0 else rev("none-0.0-1", params("none", 0.0, 1), metrics(0.91)),
            rev(f"none-0.5-{s}", params("none", 0.5, s), metrics(0.86 + 0.01 * s)),
            # study.* differs in one seed: it never splits a point
            rev(f"vanilla-0.5-{s}", params("vanilla", 0.5, s, jobs=1 + s), metrics(0.88 + 0.01 * s)),
            rev(f"vanilla-1.0-{s}", params("vanilla", 1.0, s), metrics(0.70 + 0.01 * s, hurt=0.10)),
            rev(f"dreambooth-0.5-{s}", params("dreambooth", 0.5, s), metrics((0.87, 0.86)[s])),
            rev(f"add-0.5-{s}", params("vanilla", 0.5, s, mode="add"), metrics(0.92 + 0.01 * s)),
            rev(f"randaug-{s}", params("none", 0.0, s, augment="randaugment"), metrics((0.93, 0.95)[s])),
        ]
    finished[-1]["data"]["metrics"]["metrics/clip.json"] = {"data": {"model": "tiny", "accuracy": 0.5}}
    finished += [
        rev("frozen-none", params("none", 0.5, 0, regime="frozen", epochs=20), metrics(0.68)),
        rev("frozen-vanilla", params("vanilla", 0.5, 0, regime="frozen", epochs=20), metrics(0.70)),
    ]
    # What DVC shows for runs that did not finish: the parent commit's metrics under their own params.
    failed = rev(
        "broke-vanilla", params("vanilla", 0.75, 0), COMMIT[1], error={"msg": "Experiment run failed", "type": ""}
    )
    running = rev("still-going", params("vanilla", 0.25, 1), COMMIT[1])
    queued = rev("not-yet", params("vanilla", 0.25, 0), {})
    ranges = [exp_range(r, "success" if i % 2 else None) for i, r in enumerate(finished)]
    ranges += [exp_range(failed, "failed"), exp_range(running, "running"), exp_range(queued, "queued")]
    workspace = dict(rev("workspace", *COMMIT), rev="workspace", name=None)  # repeats the commit
    return [workspace, dict(rev("main", *COMMIT), experiments=ranges)]


def point(pts, source, p, regime="scratch", augment="standard", variant=""):
    return next(
        pt
        for pt in pts
        if (pt.source, pt.p, pt.regime, pt.augment, pt.variant) == (source, p, regime, augment, variant)
    )


def test_only_finished_experiments_are_results_and_seeds_pool():
    exps = experiments(exp_show())
    # The workspace and the commit are the committed run once; the failed, running and queued ones
    # carry the commit's 90% (or nothing) under their own params and are never results.
    assert len(exps.runs) == 16
    assert {r.name for r in exps.runs}.isdisjoint({"broke-vanilla", "still-going", "not-yet"})
    assert [(r.name, r.state) for r in exps.not_run] == [
        ("broke-vanilla", "failed"),
        ("not-yet", "queued"),
        ("still-going", "running"),
    ]
    assert exps.not_run[0].logs == "dvc queue logs broke-vanilla"
    assert exps.not_run[0].setting == "vanilla, p = 0.75, scratch, augment standard, seeds 0/0"
    assert exps.unknown_words == {"vanilla": ["triangle"]}

    pts = pool_points(exps.runs)
    vanilla = point(pts, "vanilla", 0.5)
    assert sorted(r.name for r in vanilla.runs) == ["vanilla-0.5-0", "vanilla-0.5-1"]  # study.jobs did not split
    assert (vanilla.accuracy.n, vanilla.accuracy.mean) == (2, pytest.approx(0.885))
    assert point(pts, "vanilla", 0.5, variant="mix.mode=add").accuracy.mean == pytest.approx(0.925)
    assert point(pts, "none", 0.0).accuracy.n == 2  # commit + workspace + the seed-1 run
    assert point(pts, "none", 0.5, regime="frozen").variant == ""  # frozen's 20 epochs are no variant
    assert not any(pt.p == 0.75 or pt.p == 0.25 for pt in pts)


def test_a_source_at_p_0_is_only_original_and_a_seed_counts_once():
    # The default workspace run is mix.source=vanilla at p = 0 (the same real images as none), and the
    # study queued none at p = 0 with the same seed: one point, seed 0 counted once.
    runs = experiments(
        [
            dict(
                rev("main", params("vanilla", 0.0, 0), metrics(0.90)),
                experiments=[
                    exp_range(rev("none-0", params("none", 0.0, 0), metrics(0.90)), "success"),
                    exp_range(rev("none-1", params("none", 0.0, 1), metrics(0.94)), "success"),
                ],
            )
        ]
    ).runs
    pts = pool_points(runs)
    assert [(pt.source, pt.p) for pt in pts] == [("none", 0.0)]
    assert (pts[0].accuracy.n, pts[0].accuracy.mean) == (2, pytest.approx(0.92))
    assert pts[0].class_accuracy("zero").n == 2


def test_a_workspace_whose_params_were_not_run_is_not_a_result(tmp_path):
    from diffaug.study.experiments import changed_params

    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params("vanilla", 1.0, 0)))
    lock = {
        "schema": "2.0",
        "stages": {
            "mix": {"cmd": "x", "params": {"params.yaml": {"mix": params("none", 0.0, 0)["mix"]}}},
            "evaluate": {"cmd": "y", "params": {"params.yaml": {"train.seed": 0}}},
        },
    }
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump(lock))
    # e.g. `dvc exp run -S mix.source=vanilla -S mix.p=1.0` failed in the workspace: the metrics are p = 0's
    assert changed_params(tmp_path) == ["mix.p", "mix.source"]
    states = exp_show()
    states[0]["data"]["params"]["params.yaml"]["data"] = params("vanilla", 1.0, 0)
    exps = experiments(states, changed_params(tmp_path))
    assert ("workspace", "params not run: mix.p, mix.source", "dvc status") in {
        (r.name, r.state, r.logs) for r in exps.not_run
    }
    assert not any(r.source == "vanilla" and r.p == 1.0 and r.accuracy == 0.9 for r in exps.runs)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params("none", 0.0, 0)))
    assert changed_params(tmp_path) == [] and changed_params(tmp_path / "missing") == []


def test_unknown_words_in_any_form_dvc_shows_and_from_the_workspace(tmp_path):
    from diffaug.study.experiments import workspace_unknown_words

    runs = [
        rev("a", params("none", 0.0, 0), metrics(0.9, unknown=())),
        rev("b", params("none", 0.5, 0), metrics(0.8, unknown=())),
    ]
    # DVC drops lists from the metrics it shows; a string or a dict of counts passes
    runs[0]["data"]["metrics"]["metrics/generate/img2img.json"] = {"data": {"unknown_words": "circle, quadrat_ä"}}
    runs[1]["data"]["metrics"]["metrics/generate/img2img.json"] = {"data": {"unknown_words": {"red": 3}}}
    exps = experiments([dict(rev("main", params("none", 0.0, 0), {}), experiments=[exp_range(r, None) for r in runs])])
    assert exps.unknown_words == {"img2img": ["circle", "quadrat_ä", "red"]}
    (tmp_path / "metrics/generate").mkdir(parents=True)
    (tmp_path / "metrics/generate/vanilla.json").write_text(json.dumps({"unknown_words": ["triangle"]}))
    (tmp_path / "metrics/generate/dreambooth.json").write_text(json.dumps({"unknown_words": []}))
    assert workspace_unknown_words(tmp_path) == {"vanilla": ["triangle"]}


def test_runs_of_other_settings_are_not_averaged_as_seeds():
    runs = [
        rev("a", params("none", 0.0, 0, epochs=15), metrics(0.9)),
        rev("b", params("none", 0.0, 1, epochs=15), metrics(0.92)),
        rev("c", params("none", 0.0, 0, epochs=1), metrics(0.1)),
    ]
    pts = pool_points(experiments([dict(rev("main", *COMMIT), experiments=[exp_range(r, None) for r in runs])]).runs)
    assert {(pt.variant, pt.accuracy.n) for pt in pts} == {("train.epochs=15", 2), ("train.epochs=1", 1)}


def test_report_tables_differences_and_json_from_a_fabricated_table(tmp_path):
    files = write_report(experiments(exp_show()), tmp_path)
    assert {f.name for f in files} == {
        "accuracy_vs_p.png",
        "accuracy_vs_p_scratch.png",
        "accuracy_vs_p_frozen.png",
        "class_accuracy_scratch.png",
        "fid_per_class.png",
        "summary.md",
        "summary.json",
    }
    summary = (tmp_path / "summary.md").read_text()
    ci2 = 12.7062047 * 0.01 / np.sqrt(2) / np.sqrt(2) * 100  # two seeds 1 point apart: 6.4 points
    assert f"| vanilla | 90.5 ± {ci2:.1f} (n=2) | 88.5 ± {ci2:.1f} (n=2) | 70.5 ± {ci2:.1f} (n=2) |" in summary
    assert f"| only original | 90.5 ± {ci2:.1f} (n=2) | 86.5 ± {ci2:.1f} (n=2) |  |" in summary
    assert "| vanilla [mix.mode=add] | 90.5 ± 6.4 (n=2) | 92.5 ± 6.4 (n=2) |  |" in summary
    assert "| RandAugment (only original) | 94.0 ± 12.7 (n=2) |" in summary
    assert "| frozen | vanilla | 0.5 | only original at p = 0.5 | +2.0 (one seed) | 1 |" in summary
    # adding: paired by seed the seed effect cancels (+2 points in both seeds)
    assert "| scratch | vanilla | 0.5 | only original at p = 0.5 | +2.0 [+2.0, +2.0] | 2 |" in summary
    assert "| scratch | vanilla | 1 | only original at p = 0 | -20.0 [-20.0, -20.0] | 2 |" in summary
    assert "broke-vanilla" not in summary.split("## Not run")[0]  # only in the Not run section
    assert (
        "| broke-vanilla | failed | vanilla, p = 0.75, scratch, augment standard, seeds 0/0 | "
        "`dvc queue logs broke-vanilla` |" in summary
    )
    assert "**vanilla**: `triangle`" in summary and "dreambooth**:" not in summary
    # Table 1: any source with a metrics/fid/<name>.json, the paper's first, the best of a row in bold
    assert "| class | vanilla FID | vanilla KID×10³ | dreambooth FID | dreambooth KID×10³ | img2img FID |" in summary
    assert "| zero | 40.00 | 14.00 ± 2.00 | 43.00 | 14.30 ± 2.00 | **30.00** | **13.00 ± 2.00** |" in summary
    assert "Zero-shot CLIP" in summary and "50.0%" in summary

    data = json.loads((tmp_path / "summary.json").read_text())
    row = next(
        r
        for r in data["rows"]
        if (r["source"], r["p"], r["regime"]) == ("vanilla", 0.5, "scratch") and "variant" not in r
    )
    assert row["n"] == 2 and row["mean"] == pytest.approx(0.885) and row["std"] == pytest.approx(0.007071, abs=1e-6)
    assert row["ci95"] == pytest.approx(12.7062047 * 0.005, abs=1e-6)
    assert row["per_class"]["one"] == pytest.approx(0.875)
    assert next(r for r in data["rows"] if r["regime"] == "frozen")["ci95"] is None
    assert {r["variant"] for r in data["rows"] if "variant" in r} == {"mix.mode=add"}
    assert [r["name"] for r in data["not_run"]] == ["broke-vanilla", "not-yet", "still-going"]
    assert not any(r["p"] in (0.25, 0.75) for r in data["rows"])
    assert len(data["adding"]) == 4 and len(data["replacing"]) == 3
    replace = next(d for d in data["replacing"] if (d["source"], d["p"]) == ("vanilla", 1.0))
    assert replace["against"] == {"source": "none", "p": 0.0} and replace["mean"] == pytest.approx(-0.2)
    assert data["warnings"] == [{"source": "vanilla", "unknown_words": ["triangle"]}]
    assert set(data["files"]) == {f.name for f in files}


def findings_of(tmp_path, states) -> str:
    write_report(experiments(states), tmp_path)
    return (tmp_path / "summary.md").read_text().split("## Findings")[1].split("\n## ")[0]


def test_findings_are_built_from_the_numbers(tmp_path):
    text = findings_of(tmp_path, exp_show())
    adding = next(line for line in text.splitlines() if "added to the same real images" in line)
    # vanilla +2 in both seeds supports it; dreambooth (+1, -1) is within noise; frozen has one seed
    assert "is mixed" not in adding and "holds on this run" in adding
    assert "vanilla at p = 0.5 (scratch): +2.0 [+2.0, +2.0]" in adding and "1 is within noise" in adding
    replacing = next(line for line in text.splitlines() if "Replacing real images" in line)
    assert "holds on this run" in replacing and "vanilla at p = 1 (scratch): -20.0" in replacing
    # the vanilla line has three values of p (0, 0.5, 1): its slope, paired by seed
    assert "the loss grows with p on the one line (linear fit, -20.0 [-20.0, -20.0] points per unit of p)" in replacing
    # class one loses 29 points with vanilla at p = 1 and 4 with dreambooth at p = 0.5
    assert "scratch: one (-16.5 on average over 2 sources, CI below 0 for 1), zero (-7.5" in text
    assert "frozen: cannot be judged on this run: 2 have one seed (no CI)" in text  # only p = 0.5, seed 0
    assert "zero-shot CLIP 50.0% lies below its 95% CI" in text
    assert "points against RandAugment (94.0%)" in text

    # Only scratch, one seed, no RandAugment, no CLIP: the findings say what was not measured.
    runs = [rev("a", params("none", 0.0, 0), metrics(0.9)), rev("b", params("vanilla", 0.5, 0), metrics(0.8))]
    text = findings_of(tmp_path, [dict(rev("main", *COMMIT), experiments=[exp_range(r, None) for r in runs])])
    assert "training from scratch**: not measured (only the scratch regime was run)" in text
    assert (
        "added to the same real images help** (a source at p against only original at the same p): not measured" in text
    )
    assert "cannot be judged on this run: 1 has one seed" in text
    assert "RandAugment not measured, zero-shot CLIP not measured" in text


def test_fid_of_different_extractors_is_refused(tmp_path):
    a, b = metrics(0.9), metrics(0.8)
    del a["metrics/fid/img2img.json"]  # img2img measured in b only, with another feature network
    b["metrics/fid/img2img.json"] = fid_result("img2img", 50.0, "inception")
    runs = [rev("a", params("none", 0.0, 0), a), rev("b", params("none", 0.5, 0), b)]
    with pytest.raises(DiffaugError, match="different feature extractors"):
        write_report(
            experiments(
                [dict(rev("main", params("none", 0.0, 0), {}), experiments=[exp_range(r, None) for r in runs])]
            ),
            tmp_path,
        )
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_command_reads_a_saved_exp_show_and_replaces_the_previous_report(tmp_path):
    (tmp_path / "exp.json").write_text(json.dumps(exp_show()))
    out = tmp_path / "reports"
    out.mkdir()
    (out / "accuracy_vs_p_finetune.png").write_bytes(b"old")  # a figure of an earlier report ...
    (out / "summary.json").write_text(json.dumps({"files": ["accuracy_vs_p_finetune.png", "../exp.json"]}))
    (out / "notes.txt").write_text("mine")  # ... and a file the report did not write
    main(["--input", str(tmp_path / "exp.json"), "--out", str(out)])
    assert not (out / "accuracy_vs_p_finetune.png").exists() and (out / "notes.txt").read_text() == "mine"
    assert (tmp_path / "exp.json").is_file() and (out / "summary.md").is_file()
    assert not list(tmp_path.glob(".reports.tmp-*"))
    with Image.open(out / "accuracy_vs_p.png") as im:  # two regimes side by side, the legend below them
        assert im.width > 1.5 * im.height
    with pytest.raises(DiffaugError, match="no experiment"):
        write_report(experiments([]), tmp_path / "empty")
    with pytest.raises(DiffaugError, match="--input .* is not a readable"):
        main(["--input", str(tmp_path / "missing.json"), "--out", str(out)])


# ------------------------------------------------------------------------------------------------
# A real `dvc exp show --json`: a throwaway git + DVC repo, experiments run by DVC's queue
# ------------------------------------------------------------------------------------------------

GENERATE = """\
import json, os
os.makedirs("metrics/fid", exist_ok=True); os.makedirs("metrics/generate", exist_ok=True)
per = {"zero": {"fid": 40.0, "kid": 0.01, "kid_std": 0.001}, "one": {"fid": 60.0, "kid": 0.03, "kid_std": 0.001}}
for source, scale in (("vanilla", 1.0), ("img2img", 0.5)):
    result = {"extractor": "reference", "extractor_id": "reference:x", "fid": 50.0 * scale, "kid": 0.02 * scale,
              "kid_std": 0.001, "per_class": {c: {k: v * scale for k, v in r.items()} for c, r in per.items()}}
    json.dump(result, open(f"metrics/fid/{source}.json", "w"))
json.dump({"images": 20, "unknown_words": ["triangle"]}, open("metrics/generate/vanilla.json", "w"))
"""
TRAIN = """\
import json, os, yaml
p = yaml.safe_load(open("params.yaml"))
mix, seed = p["mix"], p["train"]["seed"]
# as mix does when a source has too few images for p = 1.0
assert mix["p"] < 1.0, "class 'zero' has 100 vanilla images but the mix needs 102"
acc = 0.90 - 0.10 * mix["p"] + (0.02 if mix["source"] != "none" else 0.0) + 0.01 * seed
os.makedirs("metrics", exist_ok=True)
per_class = {"zero": round(acc + 0.02, 4), "one": round(acc - 0.02, 4)}
json.dump({"accuracy": round(acc, 4), "per_class_accuracy": per_class}, open("metrics/evaluate.json", "w"))
"""


def git_dvc_repo(root: Path, env: dict) -> None:
    """A repo of two stages with the metrics files of the real pipeline; its commit holds the
    results of its own params (only original, p = 0, seed 0), as the project's commits do."""
    root.mkdir()
    (root / "params.yaml").write_text(
        yaml.safe_dump(
            {
                "classes": CLASSES,
                "mix": {"source": "none", "p": 0.0, "seed": 0, "mode": "replace"},
                "train": {"regime": "scratch", "augment": "standard", "epochs": 1, "seed": 0},
                "study": {"jobs": 1},
            }
        )
    )
    (root / "generate.py").write_text(GENERATE)
    (root / "train.py").write_text(TRAIN)
    (root / "dvc.yaml").write_text(
        yaml.safe_dump(
            {
                "metrics": ["metrics/evaluate.json", "metrics/fid", "metrics/generate"],
                "stages": {
                    "generate": {
                        "cmd": "python generate.py",
                        "deps": ["generate.py"],
                        "metrics": [{"metrics/fid": {"cache": False}}, {"metrics/generate": {"cache": False}}],
                    },
                    "train": {
                        "cmd": "python train.py",
                        "deps": ["train.py", "metrics/generate"],
                        "params": ["classes", "mix", "train"],
                        "metrics": [{"metrics/evaluate.json": {"cache": False}}],
                    },
                },
            },
            sort_keys=False,
        )
    )
    for cmd in (
        ["git", "init", "-q"],
        ["dvc", "init", "-q"],
        ["dvc", "repro", "-q"],
        ["git", "add", "-A"],
        ["git", "commit", "-qm", "only original, p = 0"],
    ):
        subprocess.run(cmd, cwd=root, env=env, check=True, capture_output=True)


@pytest.mark.slow
def test_report_of_a_real_queue_with_a_failed_experiment(tmp_path, monkeypatch):
    """Six queued experiments (two seeds), one of which fails on purpose, and one left queued: as long
    as test_study's real queue (59-76 s beside it on a loaded 2-core machine, where that one took 78 s)."""
    env = dict(
        os.environ,
        DVC_NO_ANALYTICS="1",
        GIT_AUTHOR_NAME="t",
        GIT_AUTHOR_EMAIL="t@example.com",
        GIT_COMMITTER_NAME="t",
        GIT_COMMITTER_EMAIL="t@example.com",
    )
    repo = tmp_path / "repo"
    git_dvc_repo(repo, env)

    def dvc(*args, check=True):
        return subprocess.run(["dvc", *args], cwd=repo, env=env, check=check, capture_output=True, text=True)

    # Two seeds (train.seed; mix.seed stays 0) of only original and vanilla at p = 0.5, ...
    dvc("exp", "run", "--queue", "-S", "mix.source=none,vanilla", "-S", "mix.p=0.5", "-S", "train.seed=0,1")
    # ... the second seed of the commit's run, differing in study.* too (read by no stage: still a seed) ...
    dvc("exp", "run", "--queue", "-S", "train.seed=1", "-S", "study.jobs=2")
    # ... and vanilla at p = 1.0, which fails, as every p = 1.0 point of issue 11 did.
    dvc("exp", "run", "--queue", "-S", "mix.source=vanilla", "-S", "mix.p=1.0")
    ran = dvc("exp", "run", "--run-all", "-j", "2", check=False)  # blocks until the queue is done
    dvc("exp", "run", "--queue", "-S", "mix.p=0.25", "--name", "left-queued")
    # An edit of params.yaml not run yet: the workspace's metrics are not its results
    (repo / "params.yaml").write_text((repo / "params.yaml").read_text().replace("p: 0.0", "p: 0.75"))

    from diffaug.study import experiments as reading

    shown = []  # what `dvc exp show --json` gave the report, kept to check DVC's side of it
    monkeypatch.setattr(reading, "read_exp_show", lambda root: shown.append(read_exp_show(root)) or shown[0])
    monkeypatch.chdir(repo)
    monkeypatch.setenv("DVC_NO_ANALYTICS", "1")
    main(["--out", "reports"])
    revs = {r["name"]: r for b in shown[0] for e in b.get("experiments") or [] for r in e["revs"]}
    failed = [
        r["name"]
        for b in shown[0]
        for e in b.get("experiments") or []
        if (e["executor"] or {}).get("state") == "failed"
        for r in e["revs"]
    ]
    assert len(failed) == 1, ran.stderr
    # DVC itself carries the commit's 90% into the failed experiment, under its own params ...
    assert revs[failed[0]]["data"]["metrics"]["metrics/evaluate.json"]["data"]["accuracy"] == 0.9
    assert revs[failed[0]]["data"]["params"]["params.yaml"]["data"]["mix"] == {
        "source": "vanilla",
        "p": 1.0,
        "seed": 0,
        "mode": "replace",
    }
    # ... and shows no list in metrics: the report reads the unknown words from the workspace's file
    assert revs[failed[0]]["data"]["metrics"]["metrics/generate/vanilla.json"]["data"] == {"images": 20}

    out = repo / "reports"
    data = json.loads((out / "summary.json").read_text())
    rows = {(r["source"], r["p"]): r for r in data["rows"]}
    assert set(rows) == {("none", 0.0), ("none", 0.5), ("vanilla", 0.5)}  # no p = 1.0: it never ran
    for (source, p), row in rows.items():
        accuracy = 0.90 - 0.10 * p + (0.02 if source != "none" else 0.0)
        assert row["n"] == 2 and row["mean"] == pytest.approx(accuracy + 0.005, abs=1e-6), row  # seeds 0 and 1
        assert row["std"] == pytest.approx(0.01 / np.sqrt(2), abs=1e-6)
        assert row["ci95"] == pytest.approx(12.7062047 * 0.005, abs=1e-5)
        assert row["regime"] == "scratch" and row["augment"] == "standard" and "variant" not in row
    assert sorted((r["name"], r["state"]) for r in data["not_run"]) == sorted(
        [(failed[0], "failed"), ("left-queued", "queued"), ("workspace", "params not run: mix.p")]
    )
    (adding,), replacing = data["adding"], data["replacing"]
    assert (adding["source"], adding["p"], adding["n"]) == ("vanilla", 0.5, 2)
    assert adding["mean"] == pytest.approx(0.02, abs=1e-6)  # the same real images, paired by seed
    assert [(d["p"], d["n"], round(d["mean"], 4)) for d in replacing] == [(0.5, 2, -0.03)]
    assert data["warnings"] == [{"source": "vanilla", "unknown_words": ["triangle"]}]
    assert list(data["fid"]["sources"]) == ["vanilla", "img2img"]

    summary = (out / "summary.md").read_text()
    tables, not_run = summary.split("## Not run")
    assert failed[0] not in tables and "left-queued" not in tables and "p=1" not in tables
    assert (
        f"| {failed[0]} | failed | vanilla, p = 1, scratch, augment standard, seeds 0/0 | "
        f"`dvc queue logs {failed[0]}` |" in not_run
    )
    assert "| vanilla | 0.5 | only original at p = 0.5 | +2.0 [+2.0, +2.0] | 2 |" in tables
    assert "**vanilla**: `triangle`" in tables and "| zero | 40.00 | 10.00 ± 1.00 | **20.00** |" in tables
    # the failed experiment's log is where the report says
    assert "the mix needs 102" in dvc("queue", "logs", failed[0], check=False).stdout
    for name in ("accuracy_vs_p.png", "accuracy_vs_p_scratch.png", "class_accuracy_scratch.png", "fid_per_class.png"):
        with Image.open(out / name) as im:
            assert im.width > 300 and im.height > 200


def test_the_balance_experiment_is_its_own_table_with_an_honest_verdict(tmp_path):
    """Imbalanced d_original alone against it balanced with synthetic images, per class and in balanced
    accuracy, paired by seed; the study's usual runs (split.imbalance null) are not its partners."""

    def imbalanced(source, seed, mode, zero, one):
        prm = params(source, 0.0, seed, mode=mode)
        prm["split"] = {"imbalance": 0.1}
        mets = {
            "metrics/evaluate.json": {
                "accuracy": (zero + one) / 2 + 0.05,
                "balanced_accuracy": (zero + one) / 2,
                "per_class_accuracy": {"zero": zero, "one": one},
            }
        }
        return rev(f"{source}-{mode}-{seed}", prm, mets)

    balanced = [{"split": {"imbalance": None}, **params("none", 0.0, s)} for s in (0, 1, 2)]
    runs = [rev(f"plain-{s}", prm, metrics(0.9)) for s, prm in enumerate(balanced)]
    for s in (0, 1, 2):
        runs += [
            imbalanced("none", s, "replace", 0.95, 0.50 + 0.01 * s),
            imbalanced("img2img", s, "balance", 0.94, 0.70 + 0.02 * s),
        ]
    states = [dict(rev("main", *COMMIT), experiments=[exp_range(r, "success") for r in runs])]
    files = write_report(experiments(states), tmp_path)
    assert "balanced_accuracy.png" in {f.name for f in files}
    summary = (tmp_path / "summary.md").read_text()
    # The header counts every run `dvc exp show` lists (the baseline commit too), and where the imbalance ones went.
    assert summary.splitlines()[0] == "# Study report"
    assert summary.splitlines()[2].startswith(
        "10 finished experiments: 4 pooled over seeds into 1 point of the p grid, 6 in the class-imbalance experiment"
    )
    section = summary.split("## Class-imbalance filling")[1]
    assert "### img2img, imbalance 0.1, scratch: balancing helped (+10.0 [" in section
    assert "| one | 51.0 ± 2.5 (n=3) | 72.0 ± 5.0 (n=3) | +21.0 [" in section
    assert "| zero | 95.0 ± 0.0 (n=3) | 94.0 ± 0.0 (n=3) | -1.0 [-1.0, -1.0] |" in section
    # The imbalance runs stay out of the study's own tables: no point is split or labelled by split.imbalance.
    grid = summary.split("## Class-imbalance filling")[0]
    assert "split.imbalance" not in grid and "mix.mode=balance" not in grid
    assert "| only original | 90.0 ± 0.0 (n=3) |" in grid
    data = json.loads((tmp_path / "summary.json").read_text())["balance"]
    assert len(data) == 1 and data[0]["balanced_accuracy"]["difference"]["n"] == 3
    assert data[0]["balanced_accuracy"]["difference"]["mean"] == pytest.approx(0.10)
