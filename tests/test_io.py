"""Outputs appear whole or not at all, and what a killed run leaves never sits inside a DVC dependency."""

import os
import subprocess
import sys

import pytest

from diffaug.io import TMP, atomic_dir, atomic_dirs, write_json


def test_outputs_are_built_outside_the_folders_dvc_hashes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data/synthetic").mkdir(parents=True)
    with atomic_dir("data/synthetic/vanilla") as out:
        assert out.parent == tmp_path / TMP  # not data/synthetic/.vanilla.tmp-*, which `mix` depends on
        (out / "a.png").write_bytes(b"x")
        assert not (tmp_path / "data/synthetic/vanilla").exists()
    assert (tmp_path / "data/synthetic/vanilla/a.png").read_bytes() == b"x"
    assert sorted(os.listdir(tmp_path / "data/synthetic")) == ["vanilla"]


def test_two_outputs_are_replaced_together_or_not_at_all(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("original", "test"):
        (tmp_path / "data" / name).mkdir(parents=True)
        (tmp_path / "data" / name / "old").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_dirs("data/test", "data/original") as (test, original):
            (test / "new").write_text("new")
            raise RuntimeError("the split failed half-way")
    assert [os.listdir(tmp_path / "data" / n) for n in ("original", "test")] == [["old"], ["old"]]
    assert os.listdir(tmp_path / TMP) == []
    with atomic_dirs("data/test", "data/original") as (test, original):
        (test / "new").write_text("new")
        (original / "new").write_text("new")
    assert [os.listdir(tmp_path / "data" / n) for n in ("original", "test")] == [["new"], ["new"]]


def test_leftovers_of_a_killed_run_are_cleaned(tmp_path):
    script = (
        "import os, sys; sys.path.insert(0, sys.argv[1]); from diffaug.io import atomic_dir\n"
        "with atomic_dir('data/mixed') as out:\n    (out / 'half').write_text('x'); os._exit(9)\n"
    )
    subprocess.run([sys.executable, "-c", script, os.path.join(os.path.dirname(__file__), "..", "src")], cwd=tmp_path)
    assert len(os.listdir(tmp_path / TMP)) == 1 and not (tmp_path / "data/mixed").exists()
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; sys.path.insert(0, sys.argv[1]); from diffaug.io import "
            "write_json; write_json('metrics/mix.json', {})",
            os.path.join(os.path.dirname(__file__), "..", "src"),
        ],
        cwd=tmp_path,
        check=True,
    )
    assert os.listdir(tmp_path / TMP) == []  # the dead process's folder is gone
    assert (tmp_path / "metrics/mix.json").read_text() == "{}\n"


def test_files_outside_the_workspace_are_written_beside_themselves(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    other = tmp_path.parent / (tmp_path.name + "-cache")
    write_json(other / "x.json", {"a": 1})
    assert os.listdir(other) == ["x.json"]
