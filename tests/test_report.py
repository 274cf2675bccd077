"""The study report on a fabricated experiment table, and reading `dvc exp show --json`."""
import json

import pytest

from diffaug.errors import DiffaugError
from diffaug.report import main, rows_from_exp_show, write_report

CLASSES = ["zero", "one"]


def fid_result(source, fid, extractor="reference"):
    per = {c: {"fid": fid + i, "kid": 0.01 * (i + 1), "kid_std": 0.002, "original": 50, "synthetic": 40}
           for i, c in enumerate(CLASSES)}
    return {"source": source, "extractor": extractor, "extractor_id": f"{extractor}:abc", "fid": fid,
            "kid": 0.02, "kid_std": 0.003, "original": 100, "synthetic": 80, "per_class": per}


def exp(name, source, p, seed, accuracy, regime="scratch", augment="standard", fid=True):
    metrics = {"metrics/evaluate.json": {"data": {"accuracy": accuracy, "per_class_accuracy":
                                                  {"zero": accuracy + 0.01, "one": accuracy - 0.01}}}}
    if fid:
        for i, s in enumerate(("vanilla", "dreambooth", "textual_inversion")):
            metrics[f"metrics/fid/{s}.json"] = {"data": fid_result(s, 40.0 + 3 * i)}
    params = {"params.yaml": {"data": {"mix": {"source": source, "p": p},
                                       "train": {"regime": regime, "augment": augment, "seed": seed}}}}
    return {"rev": name * 5, "name": name, "data": {"rev": name * 5, "params": params, "metrics": metrics}}


def exp_show():
    """The shape of DVC 3.67's `dvc exp show --json`: baselines, each with its experiment ranges."""
    exps = []
    for source in ("none", "vanilla", "dreambooth"):
        for p in (0.0, 0.5, 1.0) if source != "none" else (0.0, 0.5):
            for seed in (0, 1):
                acc = 0.9 - (0.2 * p if source != "none" else 0.05 * p) + 0.01 * seed
                exps.append(exp(f"{source}-{p}-{seed}", source, p, seed, acc))
    exps.append(exp("randaug", "none", 0.0, 0, 0.93, augment="randaugment"))
    exps[-1]["data"]["metrics"]["metrics/clip.json"] = {"data": {"model": "tiny", "template": "a photo of a {}",
                                                                 "accuracy": 0.5}}
    exps.append(exp("frozen", "vanilla", 0.5, 0, 0.7, regime="frozen"))
    queued = {"rev": "q" * 40, "name": "queued", "data": None}
    workspace = dict(exp("ws", "none", 0.0, 0, 0.9), rev="workspace", name=None)  # repeats none-0.0-0
    ranges = [{"revs": [e], "executor": {"state": "success"}, "name": e["name"]} for e in exps]
    ranges.append({"revs": [queued], "executor": {"state": "queued"}, "name": "queued"})
    return [workspace, {"rev": "b" * 40, "name": "main", "data": None, "experiments": ranges}]


def test_reads_every_experiment_once():
    rows = rows_from_exp_show(exp_show())
    # 16 sweep runs + RandAugment + frozen; the workspace repeats a run, the queued one has no results
    assert len(rows) == 18
    row = next(r for r in rows if r["name"] == "vanilla-0.5-1")
    assert (row["source"], row["p"], row["regime"], row["augment"], row["seed"]) == ("vanilla", 0.5, "scratch",
                                                                                     "standard", 1)
    assert row["accuracy"] == pytest.approx(0.81) and set(row["fid"]) == {"vanilla", "dreambooth", "textual_inversion"}


def test_report_figures_and_table_from_a_fabricated_table(tmp_path):
    files = write_report(rows_from_exp_show(exp_show()), tmp_path)
    names = {f.name for f in files}
    assert {"accuracy_vs_p_scratch.png", "accuracy_vs_p_frozen.png", "class_accuracy_scratch.png",
            "fid_per_class.png", "summary.md"} <= names
    for f in files:
        assert f.stat().st_size > 1000 if f.suffix == ".png" else f.read_text()
    summary = (tmp_path / "summary.md").read_text()
    # vanilla at p=0.5: seeds give 0.80 and 0.81 -> 80.5 ± 0.7 (sample std) over 2 seeds
    assert "| vanilla | 90.5 ± 0.7 (n=2) | 80.5 ± 0.7 (n=2) | 70.5 ± 0.7 (n=2) |" in summary
    assert "| only original | 90.5 ± 0.7 (n=2) | 88.0 ± 0.7 (n=2) |  |" in summary
    assert "RandAugment baseline (only original) | 93.0 |" in summary
    assert "FID and KID per class (reference features)" in summary
    assert "| **overall** | 40.00 | 20.00 ± 3.00 | 43.00 | 20.00 ± 3.00 | 46.00 | 20.00 ± 3.00 |" in summary
    assert "| zero | 40.00 | 10.00 ± 2.00 |" in summary
    assert "Zero-shot CLIP" in summary and "50.0%" in summary


def test_fid_of_different_extractors_is_refused(tmp_path):
    a, b = exp("a", "none", 0.0, 0, 0.9), exp("b", "none", 0.5, 0, 0.8, fid=False)
    b["data"]["metrics"]["metrics/fid/textual_inversion.json"] = {"data": fid_result("textual_inversion", 50.0,
                                                                                      "inception")}
    a["data"]["metrics"].pop("metrics/fid/textual_inversion.json")
    with pytest.raises(DiffaugError, match="different feature extractors"):
        write_report(rows_from_exp_show([a, b]), tmp_path)


def test_command_reads_a_saved_exp_show(tmp_path):
    (tmp_path / "exp.json").write_text(json.dumps(exp_show()))
    main(["--input", str(tmp_path / "exp.json"), "--out", str(tmp_path / "reports")])
    assert (tmp_path / "reports" / "summary.md").is_file()
    with pytest.raises(DiffaugError, match="no experiment"):
        write_report([], tmp_path)


def test_runs_of_other_settings_are_not_averaged_as_seeds(tmp_path):
    a, b, c = exp("a", "none", 0.0, 0, 0.9), exp("b", "none", 0.0, 1, 0.92), exp("c", "none", 0.0, 0, 0.1)
    for e, epochs in ((a, 15), (b, 15), (c, 1)):
        e["data"]["params"]["params.yaml"]["data"]["train"]["epochs"] = epochs
    write_report(rows_from_exp_show([a, b, c]), tmp_path)
    summary = (tmp_path / "summary.md").read_text()
    assert "| only original [train.epochs=1] | 10.0 |" in summary
    assert "| only original [train.epochs=15] | 91.0 ± 1.4 (n=2) |" in summary
