"""`diffaug study`: the grid it queues, and a real queue run in a throwaway git + DVC repo."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml

import diffaug
from diffaug.errors import DiffaugError
from diffaug.study.command import main
from diffaug.study.grid import grid
from helpers import params_file

SRC = Path(diffaug.__file__).resolve().parents[1]

QUEUE = "dvc exp run --queue evaluate "  # what the study queues: evaluate and its upstream


def experiments(sweeps) -> list[tuple]:
    return [(s.source, p, s.regime, s.budget, s.seed) for s in sweeps for p in s.p]


def test_grid_has_the_baseline_once_and_no_empty_mixes():
    runs = experiments(
        grid(("vanilla", "dreambooth"), (0.0, 0.5, 1.0, 0.5), (("scratch", 200), ("frozen", 20)), (0, 1))
    )
    assert len(runs) == len(set(runs)) == 2 * 2 * (2 + 2 * 2)  # regimes x seeds x (none: 0, .5; 2 sources: .5, 1)
    assert Counter(r[0] for r in runs) == {"none": 8, "vanilla": 8, "dreambooth": 8}
    assert all(p < 1.0 for s, p, *_ in runs if s == "none")  # p = 1 would keep no real image
    assert all(p > 0.0 for s, p, *_ in runs if s != "none")  # p = 0 is the baseline's run
    assert {(r[2], r[3]) for r in runs} == {("scratch", 200), ("frozen", 20)}
    sweeps = grid(("vanilla",), (0.0, 1.0), (("scratch", 200),), (0, 1), randaugment=True)
    extra = [s for s in sweeps if s.augment == "randaugment"]
    assert [(s.source, s.p, s.seed) for s in extra] == [("none", (0.0,), 0), ("none", (0.0,), 1)]
    assert "train.augment=randaugment" in extra[0].args() and all(
        "train.augment" not in a for s in sweeps if not s.augment for a in s.args()
    )


def test_dry_run_prints_typed_overrides(tmp_path, monkeypatch, capsys):
    params_file(
        tmp_path,
        study={
            "sources": ["vanilla"],
            "p": [0.0, 1],
            "regimes": {"finetune": 20, "scratch": None},
            "seeds": [3],
            "randaugment": False,
            "real_per_class": [],
            "add_per_class": [],
        },
    )
    monkeypatch.chdir(tmp_path)
    main(["--dry-run"])
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        QUEUE + "-S mix.source=none -S mix.p=0.0 -S train.regime=finetune -S train.seed=3 -S mix.seed=3 "
        "-S train.steps=20",
        QUEUE + "-S mix.source=vanilla -S mix.p=1.0 -S train.regime=finetune -S train.seed=3 "
        "-S mix.seed=3 -S train.steps=20",
        QUEUE + "-S mix.source=none -S mix.p=0.0 -S train.regime=scratch -S train.seed=3 -S mix.seed=3",
        QUEUE + "-S mix.source=vanilla -S mix.p=1.0 -S train.regime=scratch -S train.seed=3 -S mix.seed=3",
    ]  # 1.0, not 1: DVC would store an int; the workspace trains for steps, so the regimes' budgets are steps
    main(["--dry-run", "--budget", "epochs"])  # the paper's fixed epochs, from a workspace that trains for steps
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("-S train.epochs=20 -S train.steps=null")
    assert lines[2].endswith("-S mix.seed=3 -S train.steps=null")


def test_a_step_budget_needs_steps_for_every_regime(tmp_path, monkeypatch):
    params_file(tmp_path, train={"steps": None}, study={"regimes": {"scratch": None}, "budget": "steps"})
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DiffaugError, match="give every regime its steps"):
        main(["--dry-run"])
    main(["--dry-run", "--regimes", "scratch=300"])


def test_grid_adds_the_yardstick_and_few_shot_points():
    sweeps = grid(
        ("vanilla", "img2img"),
        (0.0, 1.0),
        (("scratch", None),),
        (0, 1),
        real_per_class=(10, 2, 5),
        add_per_class=(5, 3),
    )
    small = [(s.source, s.p, s.n_per_class, s.mode, s.seed) for s in sweeps if s.n_per_class is not None]
    # per seed: only original at k = 2, 3, 5, 10 (3: the few-shot point's own real images), then each
    # source at k = 3 and 5 with as many synthetic images as real ones
    assert small == [
        (src, p, k, mode, seed)
        for seed in (0, 1)
        for src, p, k, mode in [("none", (0.0,), k, None) for k in (2, 3, 5, 10)]
        + [(s, (1.0,), k, "add") for k in (3, 5) for s in ("vanilla", "img2img")]
    ]
    add = next(s for s in sweeps if s.mode == "add")
    assert add.sets(1.0) == {
        "mix.source": "vanilla",
        "mix.p": 1.0,
        "train.regime": "scratch",
        "train.seed": 0,
        "mix.seed": 0,
        "mix.n_per_class": 3,
        "mix.mode": "add",
    }
    none = next(s for s in sweeps if s.n_per_class == 2)
    assert "-S mix.n_per_class=2" in " ".join(none.args()) and "mix.mode" not in " ".join(none.args())
    assert grid(("vanilla",), (0.0, 1.0), (("scratch", None),), (0,)) == grid(
        ("vanilla",), (0.0, 1.0), (("scratch", None),), (0,), real_per_class=(), add_per_class=()
    )


def test_dry_run_lists_the_yardstick_points(tmp_path, monkeypatch, capsys):
    params_file(
        tmp_path,
        study={
            "sources": ["vanilla"],
            "p": [0.0],
            "regimes": {"scratch": None},
            "seeds": [1],
            "randaugment": False,
            "real_per_class": [2],
            "add_per_class": [5],
        },
        split={"pool_per_class": 5},
    )
    monkeypatch.chdir(tmp_path)
    main(["--dry-run"])
    assert capsys.readouterr().out.splitlines() == [
        QUEUE + "-S mix.source=none -S mix.p=0.0 -S train.regime=scratch -S train.seed=1 -S mix.seed=1",
        QUEUE + "-S mix.source=none -S mix.p=0.0 -S train.regime=scratch -S train.seed=1 -S mix.seed=1 "
        "-S mix.n_per_class=2",
        QUEUE + "-S mix.source=none -S mix.p=0.0 -S train.regime=scratch -S train.seed=1 -S mix.seed=1 "
        "-S mix.n_per_class=5",
        QUEUE + "-S mix.source=vanilla -S mix.p=1.0 -S train.regime=scratch -S train.seed=1 -S mix.seed=1 "
        "-S mix.n_per_class=5 -S mix.mode=add",
        QUEUE + "-S mix.source=pool -S mix.p=1.0 -S train.regime=scratch -S train.seed=1 -S mix.seed=1 "
        "-S mix.n_per_class=5 -S mix.mode=add",
    ]  # the pool, a real source, is the few-shot points' control
    main(["--dry-run", "--real-per-class", "", "--add-per-class", ""])  # the options override, '' empties
    assert len(capsys.readouterr().out.splitlines()) == 1


def test_an_impossible_yardstick_size_fails_before_queueing(tmp_path, monkeypatch):
    from diffaug.params import ParamsError

    params_file(
        tmp_path,
        study={
            "sources": ["vanilla"],
            "p": [0.0],
            "regimes": {"scratch": None},
            "seeds": [0],
            "real_per_class": [100000],
            "add_per_class": [],
        },
    )
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ParamsError, match="mix.n_per_class=100000 .*would fail"):
        main(["--dry-run"])


TRAIN = """\
import json, yaml
p = yaml.safe_load(open("params.yaml"))
assert p["train"]["augment"] != "randaugment", "no RandAugment in this repo"
json.dump({"accuracy": 0.9 - p["mix"]["p"] / 10, "epochs": p["train"]["epochs"]}, open("metrics.json", "w"))
"""


def exp_show(repo: Path, env: dict) -> list[dict]:
    out = subprocess.run(
        ["dvc", "exp", "show", "--json"], cwd=repo, env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)


@pytest.mark.slow
def test_study_queues_runs_and_reports_in_a_real_repo(tmp_path):
    """About 30 s: a one-stage pipeline, five experiments, one of which (RandAugment) fails on purpose."""
    repo = tmp_path / "repo"
    repo.mkdir()
    params_file(
        repo,
        mix={"source": "none", "p": 0.0, "seed": 0},
        train={"regime": "scratch", "epochs": 1, "seed": 0, "augment": "standard"},
        study={
            "sources": ["vanilla"],
            "p": [0.0, 0.5, 1.0],
            "regimes": {"frozen": 2},
            "seeds": [0],
            "jobs": 2,
            "target": "train",  # this pipeline's last stage: each experiment reproduces it alone
            "real_per_class": [],
            "add_per_class": [],
            "budget": "epochs",  # the paper's fixed epochs: the fake train.py records them
        },
    )
    (repo / "train.py").write_text(TRAIN)
    (repo / "dvc.yaml").write_text(
        yaml.safe_dump(
            {
                "stages": {
                    "train": {
                        "cmd": "python train.py",
                        "deps": ["train.py"],
                        "params": ["mix", "train"],
                        "metrics": [{"metrics.json": {"cache": False}}],
                    }
                }
            }
        )
    )
    # diffaug.study.report resolves to the repo's own module first, the study to the code under test.
    env = dict(
        os.environ,
        PYTHONPATH=str(SRC),
        DVC_NO_ANALYTICS="1",
        GIT_AUTHOR_NAME="t",
        GIT_AUTHOR_EMAIL="t@example.com",
        GIT_COMMITTER_NAME="t",
        GIT_COMMITTER_EMAIL="t@example.com",
    )
    for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "tiny"]):
        subprocess.run(cmd, cwd=repo, env=env, check=True, capture_output=True)

    proc = subprocess.run(
        [sys.executable, "-m", "diffaug", "study", "--sources", "vanilla", "--no-report"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    # The RandAugment baseline was queued and fails in this repo: the study names it and says where
    # the log is, in one line.
    assert proc.returncode == 2, proc.stderr
    error = proc.stderr.strip().splitlines()[-1]
    assert error.startswith("error: 1 of 5 experiments failed") and "dvc queue logs" in error, proc.stderr
    # progress while the queue runs, not only once it is empty
    assert re.search(r"study: [0-4] of 5 experiments finished", proc.stderr), proc.stderr

    show = exp_show(repo, env)  # every experiment is back once the study returns
    runs = {}
    for exp in (e for baseline in show for e in baseline["experiments"] or []):
        for rev in exp["revs"]:
            data = rev["data"]
            mix, train = data["params"]["params.yaml"]["data"]["mix"], data["params"]["params.yaml"]["data"]["train"]
            metrics = (data.get("metrics") or {}).get("metrics.json", {}).get("data")
            runs[(mix["source"], mix["p"], train["augment"])] = (train["regime"], train["epochs"], metrics)
    ok = {k[:2]: v for k, v in runs.items() if v[2] and k[2] == "standard"}
    assert set(ok) == {("none", 0.0), ("none", 0.5), ("vanilla", 0.5), ("vanilla", 1.0)}
    assert not runs.get(("none", 0.0, "randaugment"), (0, 0, None))[2]  # the one that failed
    assert all(v[:2] == ("frozen", 2) and v[2]["epochs"] == 2 for v in ok.values())
    assert ok[("vanilla", 1.0)][2]["accuracy"] == pytest.approx(0.8)
    status = subprocess.run(["dvc", "queue", "status"], cwd=repo, env=env, capture_output=True, text=True).stdout
    assert "0 active" in status  # no worker left running an experiment

    # A second study in the same repo runs every experiment: the first left no `queue stop` behind that
    # would stop the next worker after one experiment.
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "diffaug",
            "study",
            "--sources",
            "vanilla",
            "--p",
            "0.5",
            "--seeds",
            "1",
            "--no-randaugment",
            "--no-report",
        ],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "2 experiments succeeded" in proc.stderr


@pytest.mark.parametrize(
    "study, key",
    [
        ({"sources": ["none"]}, "study.sources"),
        ({"p": [0.5, 1.5]}, "study.p"),
        ({"regimes": {"scratch": 0}}, "study.regimes.scratch"),
        ({"regimes": {"linear": 5}}, "study.regimes"),
        ({"regimes": ["scratch"]}, "study.regimes"),
        ({"seeds": []}, "study.seeds"),
        ({"jobs": 0}, "study.jobs"),
        ({"randaugment": "yes"}, "study.randaugment"),
        ({"real_per_class": [0]}, "study.real_per_class"),
        ({"add_per_class": "5"}, "study.add_per_class"),
        ({"grid": 1}, "study.grid"),
    ],
)
def test_study_params_are_checked(tmp_path, study, key):
    from diffaug.params import ParamsError, load_params

    with pytest.raises(ParamsError, match=key.replace(".", r"\.")):
        load_params(params_file(tmp_path, study=study))


STATUS = """\
Task     Name        Created    Status
6b373af  spiry-grot  03:49 PM   Success
119a9a7  aided-coat  03:49 PM   Queued
75a2dcd  sharp-mako  03:49 PM   Failed

Worker status: {} active, 0 idle
"""


def test_wait_reads_the_queue_and_gives_up_without_workers(monkeypatch):
    from diffaug.errors import DiffaugError
    from diffaug.study import queue

    seen, workers = [], [1, 1, 0, 0, 0, 0]
    monkeypatch.setattr(queue, "dvc", lambda *a, **k: seen.append(a) or STATUS.format(workers.pop(0)))
    with pytest.raises(DiffaugError, match="no worker left with 1 experiments"):
        queue.wait(["spiry-grot", "aided-coat", "sharp-mako"], poll=0.0)
    assert len(seen) == 5 and seen[0] == ("queue", "status")
    monkeypatch.setattr(
        queue, "dvc", lambda *a, **k: STATUS.format(1).replace("Queued", "Running ").replace("Running ", "Success")
    )
    assert queue.wait(["spiry-grot", "aided-coat", "sharp-mako"], poll=0.0) == {
        "spiry-grot": ("6b373af", "Success"),
        "aided-coat": ("119a9a7", "Success"),
        "sharp-mako": ("75a2dcd", "Failed"),
    }


def test_every_experiment_of_the_default_study_has_valid_params(monkeypatch, capsys):
    """The documented default (`--seeds 0,1,2`) as the queue would get it: every point's params load."""
    from diffaug.params import parse_params
    from diffaug.study.grid import with_sets

    monkeypatch.chdir(SRC.parent)
    main(["--dry-run", "--seeds", "0,1,2"])
    raw = yaml.safe_load((SRC.parent / "params.yaml").read_text())
    points = []
    for line in capsys.readouterr().out.splitlines():
        sets = dict(s.split("=", 1) for s in line.split(" -S ")[1:])
        for p in sets["mix.p"].split(","):
            points.append({**{k: yaml.safe_load(v) for k, v in sets.items()}, "mix.p": float(p)})
    # 3 seeds x (none at 4 p, 5 sources at 4 p, RandAugment, none at k = 1, 2, 4, 8, 5 sources and the pool at
    # k = 4 in add mode)
    assert len(points) == 3 * (25 + 4 + 6)
    assert {pt["mix.source"] for pt in points} == {
        "none",
        "vanilla",
        "dreambooth",
        "textual_inversion",
        "img2img",
        "vanilla_filtered",
        "pool",
    }
    for point in points:
        params = parse_params(with_sets(raw, point))
        assert params.train.seed == params.mix.seed == point["train.seed"]


def test_workers_share_the_cores_only_when_several_run(monkeypatch):
    from diffaug.study.queue import worker_env

    monkeypatch.setattr("os.cpu_count", lambda: 8)
    assert "OMP_NUM_THREADS" not in worker_env(1, {})
    assert worker_env(2, {})["OMP_NUM_THREADS"] == "4"
    assert worker_env(16, {})["OMP_NUM_THREADS"] == "1"
    assert worker_env(2, {"OMP_NUM_THREADS": "3"})["OMP_NUM_THREADS"] == "3"  # the user's choice stands


def test_real_controls_run_only_in_the_few_shot_points():
    sweeps = grid(("vanilla",), (0.0, 0.5), (("scratch", None),), (0,), add_per_class=(4,), controls=("pool",))
    pool = [s for s in sweeps if s.source == "pool"]
    assert [(s.p, s.n_per_class, s.mode) for s in pool] == [((1.0,), 4, "add")]
    assert {(s.source, s.n_per_class) for s in sweeps if s.n_per_class} == {("none", 4), ("vanilla", 4), ("pool", 4)}


def test_each_experiment_reproduces_the_target_and_its_upstream_only(tmp_path):
    """`dvc exp run evaluate`: DVC checks out and checks evaluate's upstream, not every source's stages."""
    from diffaug.params import load_params
    from diffaug.study.grid import sweeps_of

    sweeps = sweeps_of(load_params(params_file(tmp_path)))
    assert sweeps and all(s.args()[0] == "evaluate" and s.args()[1] == "-S" for s in sweeps)
    whole = sweeps_of(load_params(params_file(tmp_path, study={"target": None})))
    assert all(s.args()[0] == "-S" for s in whole)
