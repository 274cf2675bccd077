"""The `diffaug` command: one entry point, a subcommand per tool, each the module's own main."""

import json
import os
import subprocess
import sys
from pathlib import Path

from diffaug.__main__ import params_page
from diffaug.params import params_table
from helpers import params_file

SRC = Path(__file__).resolve().parents[1] / "src"


def diffaug(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "diffaug", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(SRC)),
        timeout=120,
    )


def test_subcommands_run_the_tools(tmp_path):
    help_ = diffaug("--help", cwd=tmp_path)
    assert help_.returncode == 0 and all(f"diffaug {c}" in help_.stdout for c in ("study", "report", "profile", "cost"))
    assert diffaug("params", cwd=tmp_path).stdout == params_table()
    assert diffaug("params", "--page", cwd=tmp_path).stdout == params_page()
    bad = diffaug("params", "--pages", cwd=tmp_path)
    assert bad.returncode == 2 and "unknown option '--pages'" in bad.stderr
    params_file(
        tmp_path,
        study={
            "sources": ["vanilla"],
            "p": [0.0, 1.0],
            "seeds": [0],
            "randaugment": False,
            "real_per_class": [],
            "add_per_class": [],
        },
    )
    dry = diffaug("study", "--dry-run", cwd=tmp_path)
    assert dry.returncode == 0 and dry.stdout.count("dvc exp run --queue") == 2
    assert "usage: diffaug study" in diffaug("study", "--help", cwd=tmp_path).stdout
    cost = diffaug("cost", str(tmp_path / "no-metrics"), cwd=tmp_path)
    assert cost.returncode == 0 and json.loads(cost.stdout)["stages"] == {}


def test_an_unknown_subcommand_or_a_bad_profile_is_one_sentence(tmp_path):
    bad = diffaug("sutdy", cwd=tmp_path)
    assert bad.returncode == 2 and "unknown command 'sutdy'" in bad.stderr and "Traceback" not in bad.stderr
    (tmp_path / "profiles").mkdir()
    profile = diffaug("profile", "nope", cwd=tmp_path)
    assert profile.returncode == 2 and profile.stderr.startswith("error: there is no profile 'nope'")
