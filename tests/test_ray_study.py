"""`diffaug study --executor ray`: real Ray, real git and DVC, in a throwaway repo whose
pipeline is a shared stage and a one-line training stage."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml
from test_study import SRC

from diffaug.errors import DiffaugError
from diffaug.params import load_params
from helpers import params_file

ray = pytest.importorskip("ray")

PREP = """\
import os
open(os.environ["SEEN"], "a").write("prep\\n")
open("data.txt", "w").write("shared\\n")
"""
# Records where it ran, when, and on which GPU; fails for RandAugment where FAIL_RANDAUGMENT is set.
TRAIN = """\
import json, os, time, yaml
p = yaml.safe_load(open("params.yaml"))
start = time.time()
time.sleep(1.5)
assert open("data.txt").read() == "shared\\n"
line = {"cwd": os.getcwd(), "cuda": os.environ.get("CUDA_VISIBLE_DEVICES"), "start": start, "end": time.time(),
        "source": p["mix"]["source"], "p": p["mix"]["p"], "augment": p["train"]["augment"]}
open(os.environ["SEEN"], "a").write(json.dumps(line) + "\\n")
assert not (os.environ.get("FAIL_RANDAUGMENT") and p["train"]["augment"] == "randaugment"), "fails on purpose"
json.dump({"accuracy": 0.9 - p["mix"]["p"] / 10}, open("metrics.json", "w"))
"""


def tiny_repo(tmp_path: Path, monkeypatch, **study) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    params_file(
        repo,
        mix={"source": "none", "p": 0.0, "seed": 0},
        train={"regime": "scratch", "epochs": 1, "seed": 0, "augment": "standard"},
        study={
            "sources": ["vanilla"],
            "regimes": {"frozen": 2},
            "seeds": [0],
            "executor": "ray",
            "target": "train",  # this pipeline's last stage
            "retries": 1,
            "cpus_per_run": 1,
            "real_per_class": [],
            "add_per_class": [],
            "budget": "epochs",
            **study,
        },
    )
    (repo / "prep.py").write_text(PREP)
    (repo / "train.py").write_text(TRAIN)
    (repo / "dvc.yaml").write_text(
        yaml.safe_dump(
            {
                "stages": {
                    "prep": {"cmd": "python prep.py", "deps": ["prep.py"], "outs": ["data.txt"]},
                    "train": {
                        "cmd": "python train.py",
                        "deps": ["train.py", "data.txt"],
                        "params": ["mix", "train"],
                        "metrics": [{"metrics.json": {"cache": False}}],
                    },
                }
            }
        )
    )
    # Set before Ray starts: its workers, and the dvc and git they run, inherit this environment.
    for key, value in {
        "PYTHONPATH": str(SRC),
        "DVC_NO_ANALYTICS": "1",
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
        "SEEN": str(tmp_path / "seen.log"),
    }.items():
        monkeypatch.setenv(key, value)
    for cmd in (
        ["git", "init", "-q", "-b", "main"],
        ["dvc", "init", "-q"],
        ["git", "add", "-A"],
        ["git", "commit", "-qm", "tiny"],
    ):
        subprocess.run(cmd, cwd=repo, check=True, capture_output=True)
    monkeypatch.chdir(repo)
    return repo


def seen(tmp_path: Path) -> list:
    path = tmp_path / "seen.log"
    return (
        [line if line == "prep" else json.loads(line) for line in path.read_text().splitlines()]
        if path.exists()
        else []
    )


def exp_show(repo: Path) -> dict[str, dict]:
    """Experiment name -> its metrics, from `dvc exp show --json` in `repo`."""
    show = json.loads(
        subprocess.run(["dvc", "exp", "show", "--json"], cwd=repo, capture_output=True, text=True, check=True).stdout
    )
    return {
        rev["name"]: ((rev["data"].get("metrics") or {}).get("metrics.json") or {}).get("data")
        for baseline in show
        for e in baseline.get("experiments") or []
        for rev in e["revs"]
    }


@pytest.fixture
def local_ray():
    yield lambda **kw: ray.init(include_dashboard=False, logging_level="WARNING", **kw)
    ray.shutdown()


@pytest.mark.slow
def test_ray_runs_each_point_in_its_own_clone_through_remotes_and_resumes(tmp_path, monkeypatch, local_ray):
    """About 60 s: five points two at a time through a bare git remote and a directory DVC remote,
    one failing on purpose (and retried once), then a rerun that runs nothing new."""
    from diffaug.study.command import main

    repo = tiny_repo(tmp_path, monkeypatch, p=[0.0, 0.5, 1.0], randaugment=True)
    reported = []  # what the report would read, taken when the study runs it
    monkeypatch.setattr("diffaug.study.command.run_report", lambda: reported.append(exp_show(repo)))
    monkeypatch.setenv("FAIL_RANDAUGMENT", "1")
    bare, store = tmp_path / "remote.git", tmp_path / "dvc-store"
    subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)
    local_ray(num_cpus=2)
    remotes = ["--git-remote", str(bare), "--dvc-remote", str(store)]
    with pytest.raises(DiffaugError) as error:
        main(remotes)
    failed = "none-p0-frozen-2ep-s0-randaugment"
    assert str(error.value).startswith(f"1 of 5 experiments failed, first {failed}; read .dvc/tmp/study/{failed}.log")
    assert "fails on purpose" in (repo / ".dvc/tmp/study" / f"{failed}.log").read_text()

    runs = seen(tmp_path)
    assert runs.count("prep") == 1  # the shared stage ran once, here; the clones pulled its output
    here, trained = (
        [r for r in runs if r != "prep" and r["cwd"] == str(repo)],
        [r for r in runs if r != "prep" and r["cwd"] != str(repo)],
    )
    assert len(here) == 1  # `dvc repro` at the workspace's params, before the study
    assert len(trained) == len({r["cwd"] for r in trained}) == 6  # 4 points, the failing one twice (retries: 1)
    assert all(r["cuda"] in (None, "") for r in trained)  # no GPU in this cluster: CPU cores were asked for

    metrics = exp_show(repo)
    assert {n: m["accuracy"] for n, m in metrics.items() if m} == pytest.approx(
        {
            "none-p0-frozen-2ep-s0": 0.9,
            "none-p0.5-frozen-2ep-s0": 0.85,
            "vanilla-p0.5-frozen-2ep-s0": 0.85,
            "vanilla-p1-frozen-2ep-s0": 0.8,
        }
    )
    assert len(reported) == 1 and reported[0] == metrics  # the report ran, after every experiment was back

    main([*remotes, "--no-randaugment"])  # everything finished already
    assert len(seen(tmp_path)) == len(runs)


@pytest.mark.slow
@pytest.mark.parametrize("gpus, gpus_per_run", [(2, 1.0), (1, 0.5)], ids=["a_gpu_each", "two_share_a_gpu"])
def test_ray_gives_concurrent_runs_their_gpu_share(tmp_path, monkeypatch, local_ray, gpus, gpus_per_run):
    """About 25 s each: mock GPUs (Ray's resources), three runs through the shared cache. With a whole GPU per
    run, runs that overlap hold different GPUs; with half a GPU, two runs overlap on the one GPU, so one run's
    DVC work and start-up overlap the other's training."""
    from diffaug.study import ray as ray_study
    from diffaug.study.command import main

    repo = tiny_repo(tmp_path, monkeypatch, p=[0.0, 1.0], randaugment=True, gpus_per_run=gpus_per_run)
    local_ray(num_cpus=4, num_gpus=gpus)
    results, run_study = [], ray_study.run_study
    monkeypatch.setattr(ray_study, "run_study", lambda *a, **k: results.extend(run_study(*a, **k)))
    main(["--no-report"])
    assert sorted(r["name"] for r in results if r["ok"]) == [
        "none-p0-frozen-2ep-s0",
        "none-p0-frozen-2ep-s0-randaugment",
        "vanilla-p1-frozen-2ep-s0",
    ]
    assert all(r["resources"]["GPU"] == gpus_per_run for r in results)  # each asked Ray for its share
    trained = [r for r in seen(tmp_path) if r != "prep" and r["cwd"] != str(repo)]
    assert len(trained) == 3 and all(r["cuda"] in {str(g) for g in range(gpus)} for r in trained)
    overlapping = [
        (a, b)
        for i, a in enumerate(trained)
        for b in trained[i + 1 :]
        if a["start"] < b["end"] and b["start"] < a["end"]
    ]
    assert overlapping
    if gpus_per_run == 1.0:
        assert all(a["cuda"] != b["cuda"] for a, b in overlapping)
    assert len([n for n, m in exp_show(repo).items() if m]) == 3


def test_resources_ask_for_a_gpu_share_or_cpu_cores():
    from diffaug.study.ray import resources

    study = load_params(Path(SRC.parent / "params.yaml")).study.model_copy(
        update={"gpus_per_run": 0.25, "cpus_per_run": 2}
    )
    assert resources(study, {"CPU": 16.0, "GPU": 4.0}) == {"num_gpus": 0.25}
    assert resources(study, {"CPU": 16.0}) == {"num_cpus": 2.0}
    with pytest.raises(DiffaugError, match="study.cpus_per_run is 2 but the Ray cluster has 1 CPUs"):
        resources(study, {"CPU": 1.0})


def test_names_follow_the_grid_point():
    from diffaug.study.grid import grid, planned_experiments

    names = [
        s.name(p)
        for s, p in planned_experiments(
            grid(("vanilla",), (0.0, 0.25, 1.0), (("scratch", None), ("frozen", 20)), (0, 1), True)
        )
    ]
    assert len(names) == len(set(names)) == 2 * 2 * (2 + 1 + 2)
    assert "vanilla-p0.25-frozen-20st-s1" in names and "none-p0-scratch-s0-randaugment" in names
    few = [
        s.name(p)
        for s, p in planned_experiments(
            grid(("vanilla",), (0.0, 1.0), (("scratch", None),), (0,), True, real_per_class=(2, 5), add_per_class=(5,))
        )
    ]
    assert len(few) == len(set(few)) == 1 + 1 + 1 + 2 + 1
    assert {"none-k2-p0-scratch-s0", "none-k5-p0-scratch-s0", "vanilla-k5-add-p1-scratch-s0"} <= set(few)
