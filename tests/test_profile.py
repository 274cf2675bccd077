"""The paper profile: a complete params file, one command to switch, and `dvc repro --dry` lists the study."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from diffaug.errors import DiffaugError
from diffaug.params import load_params
from diffaug.study.profiles import switch

REPO = Path(__file__).resolve().parents[1]
PAPER = REPO / "profiles" / "paper.yaml"


def keys(tree, prefix=""):
    """Every key path of a params file (lists and the study's regimes are values, not keys)."""
    out = set()
    for k, v in tree.items():
        out.add(prefix + k)
        if isinstance(v, dict) and k != "regimes":
            out |= keys(v, f"{prefix}{k}.")
    return out


def test_paper_profile_has_every_key_of_params_yaml():
    # A section or key added to params.yaml (another stage's) must be set for the paper too.
    default, paper = (yaml.safe_load(p.read_text()) for p in (REPO / "params.yaml", PAPER))
    assert keys(paper) == keys(default)


def test_paper_profile_is_the_study():
    p = load_params(PAPER)
    assert len(p.classes) == 10 and "airplane" in p.classes and "truck" in p.classes
    assert (p.split.original_per_class, p.split.test_per_class) == (700, 300)
    assert p.scrape.source == "search" and p.scrape.per_class >= 1000
    assert p.base.model == "CompVis/stable-diffusion-v1-4"
    assert p.generate.per_class == 700 and p.generate.guidance == 7.5 and p.generate.resolution is None
    assert dict(p.study.regimes) == {"scratch": 200, "finetune": 20, "frozen": 20}
    assert p.study.p == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert (p.train.lr, p.train.momentum, p.mix.val_fraction) == (1.0e-3, 0.9, 0.15)
    text = PAPER.read_text()
    assert "scheduler: lms" in text and "steps: 50" in text  # the paper's generation settings, as the option


def test_switch_checks_the_profile_first(tmp_path):
    (tmp_path / "profiles").mkdir()
    (tmp_path / "params.yaml").write_text("classes: [zero]\n")
    bad = yaml.safe_load((REPO / "params.yaml").read_text())
    bad["mix"]["p"] = 2.0
    (tmp_path / "profiles" / "bad.yaml").write_text(yaml.safe_dump(bad))
    with pytest.raises(DiffaugError, match="mix.p"):
        switch("bad", tmp_path)
    with pytest.raises(DiffaugError, match="available: bad"):
        switch("nope", tmp_path)
    assert (tmp_path / "params.yaml").read_text() == "classes: [zero]\n"
    shutil.copy(PAPER, tmp_path / "profiles" / "paper.yaml")
    switch("paper", tmp_path)
    assert (tmp_path / "params.yaml").read_bytes() == PAPER.read_bytes()


def git_files() -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return [f for f in out if (REPO / f).is_file() and not f.startswith("tests/")]


OUTS = """
from pathlib import Path
from dvc.repo import Repo
for stage in Repo(".").index.stages:
    for out in [*stage.outs, *stage.deps]:  # deps too: data/original/<class> lies inside an output
        if not Path(out.def_path).exists():
            print(out.def_path)
"""


def test_dvc_repro_dry_lists_the_full_study(tmp_path):
    """The documented switch, then `dvc repro --dry` on a copy of the repo: every stage, no error."""
    root = tmp_path / "project"
    for f in git_files():
        (root / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / f, root / f)
    env = dict(
        os.environ,
        PYTHONPATH=str(root / "src"),
        DVC_NO_ANALYTICS="1",
        GIT_AUTHOR_NAME="t",
        GIT_AUTHOR_EMAIL="t@example.com",
        GIT_COMMITTER_NAME="t",
        GIT_COMMITTER_EMAIL="t@example.com",
    )
    proc = subprocess.run(
        [sys.executable, "-m", "diffaug.study.profiles", "paper"], cwd=root, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "paper"]):
        subprocess.run(cmd, cwd=root, env=env, check=True, capture_output=True)
    declared = set(yaml.safe_load((root / "dvc.yaml").read_text())["stages"])

    def dry(*extra: str) -> set[str]:
        proc = subprocess.run(
            ["dvc", "repro", "--dry", *extra], cwd=root, env=env, capture_output=True, text=True, timeout=120
        )
        assert proc.returncode == 0 and "ERROR" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
        stages = set(re.findall(r"Running stage '([^']+)'", proc.stdout))
        # Every stage of dvc.yaml (matrix stages as name@item) would run.
        assert {s.split("@")[0] for s in stages} == declared
        assert {
            "scrape",
            "split",
            "base_model",
            "prompts",
            "generate@vanilla",
            "check",
            "mix",
            "train",
            "evaluate",
        } <= stages
        return stages

    # A fresh clone: DVC's dry run looks up its run-cache, which needs the upstream outputs to exist
    # (treeverse/dvc#9021); --force skips that lookup.
    fresh = dry("--force")
    # A workspace that ran before (here: placeholders for every output and input): the plain dry run.
    outs = subprocess.run(
        [sys.executable, "-c", OUTS], cwd=root, env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    for out in outs:
        path = root / out
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix:
            path.write_text("{}")
        else:
            path.mkdir(exist_ok=True)
            (path / "placeholder").write_text("x")
    assert dry() == fresh


def test_offline_without_sd_weights_is_one_sentence(tmp_path):
    shutil.copy(PAPER, tmp_path / "params.yaml")
    proc = subprocess.run(
        [sys.executable, "-m", "diffaug.stages.base_model"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={
            "PYTHONPATH": str(REPO / "src"),
            "PATH": os.environ["PATH"],
            "HF_HOME": str(tmp_path / "hf"),
            "HF_HUB_OFFLINE": "1",
            "DIFFAUG_CACHE": str(tmp_path / "cache"),
        },
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "error: the base model CompVis/stable-diffusion-v1-4 at revision main"
    )
    assert "hf download CompVis/stable-diffusion-v1-4 --revision main" in lines[0]
    assert "Traceback" not in proc.stderr


def test_switch_keeps_uncommitted_edits_unless_forced(tmp_path):
    (tmp_path / "profiles").mkdir()
    shutil.copy(PAPER, tmp_path / "profiles" / "paper.yaml")
    (tmp_path / "params.yaml").write_text("classes: [zero]\n")
    env = dict(
        os.environ,
        GIT_AUTHOR_NAME="t",
        GIT_AUTHOR_EMAIL="t@example.com",
        GIT_COMMITTER_NAME="t",
        GIT_COMMITTER_EMAIL="t@example.com",
    )
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "x"]):
        subprocess.run(cmd, cwd=tmp_path, env=env, check=True, capture_output=True)
    (tmp_path / "params.yaml").write_text("classes: [one]\n")  # an edit not committed
    with pytest.raises(DiffaugError, match="uncommitted changes"):
        switch("paper", tmp_path)
    assert (tmp_path / "params.yaml").read_text() == "classes: [one]\n"
    switch("paper", tmp_path, force=True)
    assert (tmp_path / "params.yaml").read_bytes() == PAPER.read_bytes()
    switch("paper", tmp_path)  # switching to the profile it already holds is fine
