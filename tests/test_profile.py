"""The paper profile: an overlay of the keys it changes, one command to merge it onto params.yaml, and
`dvc repro --dry` lists the study."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from diffaug.errors import DiffaugError
from diffaug.params import Params, load_params
from diffaug.study.command import main as study
from diffaug.study.profiles import merge_profile, switch

REPO = Path(__file__).resolve().parents[1]
PAPER = REPO / "profiles" / "paper.yaml"
PARAMS = REPO / "params.yaml"
GIT_ENV = dict(
    os.environ,
    GIT_AUTHOR_NAME="t",
    GIT_AUTHOR_EMAIL="t@example.com",
    GIT_COMMITTER_NAME="t",
    GIT_COMMITTER_EMAIL="t@example.com",
)


def project(tmp_path: Path, **profiles: str) -> Path:
    """A folder holding the committed params.yaml, the paper profile and `profiles` (name -> its YAML)."""
    (tmp_path / "profiles").mkdir()
    shutil.copy(PARAMS, tmp_path / "params.yaml")
    shutil.copy(PAPER, tmp_path / "profiles" / "paper.yaml")
    for name, text in profiles.items():
        (tmp_path / "profiles" / f"{name}.yaml").write_text(text)
    return tmp_path


def experiments(folder: Path, monkeypatch, capsys) -> int:
    """How many experiments `diffaug study --dry-run` would queue from folder/params.yaml."""
    monkeypatch.chdir(folder)
    study(["--dry-run"])
    return sum(len(re.search(r"-S mix\.p=(\S+)", line)[1].split(",")) for line in capsys.readouterr().out.splitlines())


def test_the_paper_profile_lists_only_what_it_changes():
    default, paper = (yaml.safe_load(p.read_text()) for p in (PARAMS, PAPER))

    def same(overlay: dict, base: dict, model, prefix="") -> list[str]:
        out = []
        for key, value in overlay.items():
            field = model.model_fields[key].annotation
            if isinstance(value, dict) and isinstance(field, type) and issubclass(field, BaseModel):
                out += same(value, base[key], field, f"{prefix}{key}.")
            elif value == base[key] and type(value) is type(base[key]):
                out.append(prefix + key)
        return out

    assert same(paper, default, Params) == []


def test_the_paper_profile_merged_onto_params_yaml_is_the_study(tmp_path, monkeypatch, capsys):
    switch("paper", project(tmp_path))
    p = load_params(tmp_path / "params.yaml")  # the merged file passes the check the stages run
    assert p.classes == ["airplane", "car", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    assert (p.scrape.source, p.scrape.per_class) == ("search", 1800)
    assert (p.split.original_per_class, p.split.test_per_class, p.split.pool_per_class) == (700, 300, 700)
    assert (p.base.model, p.clip.model, p.fid.features) == (
        "CompVis/stable-diffusion-v1-4",
        "openai/clip-vit-base-patch32",
        "inception",
    )
    assert (p.generate.per_class, p.generate.guidance, p.generate.resolution, p.generate.save_size) == (
        700,
        7.5,
        None,  # SD 1.x's native 512 px, kept
        None,
    )
    assert (p.train.image_size, p.reference.image_size) == (224, 224)
    assert (p.train.lr, p.train.momentum, p.train.batch_size, p.mix.val_fraction) == (1.0e-3, 0.9, 512, 0.15)
    # The paper's fixed-epoch budget: 200 epochs from scratch, 20 finetuned or frozen.
    assert (p.train.steps, p.train.epochs, p.study.budget) == (None, 200, None)
    assert dict(p.study.regimes) == {"scratch": 200, "finetune": 20, "frozen": 20}
    assert p.study.p == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert p.study.seeds == [0, 1, 2]
    assert p.study.sources == ["vanilla", "dreambooth", "textual_inversion", "img2img", "vanilla_filtered"]
    assert (p.dreambooth.steps, p.textual_inversion.steps) == (800, 3000)
    # 34 a regime and seed: 4 + 1 RandAugment + 5 sources x 4 values of p, 3 + 1 yardstick sizes, 5 + 1 few-shot
    assert experiments(tmp_path, monkeypatch, capsys) == 34 * 3 * 3
    assert "scheduler: lms" in PAPER.read_text() and "steps: 50" in PAPER.read_text()  # the paper's sampler


def test_the_switch_keeps_params_yaml_comments_and_key_order(tmp_path):
    switch("paper", project(tmp_path))
    before, after = PARAMS.read_text().splitlines(), (tmp_path / "params.yaml").read_text().splitlines()

    def comments(lines):
        return [line[line.index("#") :] for line in lines if "#" in line]

    def keys(tree, prefix=""):
        out = []
        for k, v in tree.items():
            out.append(prefix + k)
            if isinstance(v, dict) and k != "regimes":  # a value the profile replaces
                out += keys(v, f"{prefix}{k}.")
        return out

    assert len(after) == len(before) and comments(after) == comments(before)
    assert keys(yaml.safe_load("\n".join(after))) == keys(yaml.safe_load("\n".join(before)))
    assert before[0] in after  # lines the profile does not touch are as they were
    assert "  workers: 8          # urls: parallel downloads" in after
    assert "  per_class: 1800     # search: valid, unique images to collect per class" in after


def test_a_key_params_yaml_lacks_is_refused_by_name(tmp_path):
    project(tmp_path, typo="train:\n  epochz: 3\n", section="trian:\n  epochs: 3\n")
    with pytest.raises(DiffaugError, match=r"^profiles/typo.yaml: train.epochz is not a key of params.yaml; "):
        switch("typo", tmp_path)
    with pytest.raises(DiffaugError, match=r"^profiles/section.yaml: trian is not a key"):
        switch("section", tmp_path)
    assert (tmp_path / "params.yaml").read_bytes() == PARAMS.read_bytes()


def test_a_bad_merge_stops_with_one_sentence_and_leaves_params_yaml(tmp_path):
    project(tmp_path, bad="mix:\n  p: 2.0\n", source="mix:\n  source: nope\n")
    with pytest.raises(DiffaugError) as e:
        switch("bad", tmp_path)
    assert str(e.value) == (
        "params.yaml merged with profiles/bad.yaml: mix.p = 2.0 is not allowed; use a proportion between "
        "0.0 and 1.0; params.yaml is left as it was."
    )
    with pytest.raises(DiffaugError, match="mix.source = 'nope' is not allowed"):  # checked against sources
        switch("source", tmp_path)
    with pytest.raises(DiffaugError, match="available: bad, paper, source"):
        switch("nope", tmp_path)
    assert (tmp_path / "params.yaml").read_bytes() == PARAMS.read_bytes()


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
    switch("paper", project(tmp_path))
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
    project(tmp_path)
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "x"]):
        subprocess.run(cmd, cwd=tmp_path, env=GIT_ENV, check=True, capture_output=True)
    edited = PARAMS.read_text().replace("workers: 8 ", "workers: 4 ")  # an edit not committed
    (tmp_path / "params.yaml").write_text(edited)
    with pytest.raises(DiffaugError, match="uncommitted changes"):
        switch("paper", tmp_path)
    assert (tmp_path / "params.yaml").read_text() == edited
    switch("paper", tmp_path, force=True)
    merged = (tmp_path / "params.yaml").read_text()
    assert "classes: [airplane," in merged and "workers: 4 " in merged  # merged onto the edit
    switch("paper", tmp_path)  # switching to the profile it already holds is fine, and changes nothing
    assert (tmp_path / "params.yaml").read_text() == merged == merge_profile("paper", tmp_path)[0]
