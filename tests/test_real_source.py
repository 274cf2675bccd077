"""The real source: split's held-out pool -> real@<name> -> a source that mix, measure and the study take."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from diffaug.diffusion.jobs import MANIFEST_COLUMNS
from diffaug.io import list_images, read_csv, read_json, sha256_tree, write_csv, write_json
from diffaug.params import ParamsError, parse_params
from diffaug.rules import made_count, more_of, source_count
from helpers import params_file, pattern

REPO = Path(__file__).resolve().parents[1]
CLASSES = ["cat", "dog"]


def stage(root: Path, module: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [sys.executable, "-m", f"diffaug.stages.{module}", *args],
        cwd=root,
        check=check,
        capture_output=True,
        text=True,
        env=env,
    )


def make_project(root: Path, pool_per_class: int, **mix) -> Path:
    """data/raw with 12 distinct images a class, and params that split 6 + 4 of them (2 left for the pool)."""
    rows = []
    for k, c in enumerate(CLASSES):
        (root / "data/raw" / c).mkdir(parents=True)
        for i in range(12):
            pattern(100 * k + i).save(root / f"data/raw/{c}/{i:02d}.png")
            rows.append({"class": c, "file": f"{c}/{i:02d}.png"})
    write_csv(root / "data/raw/manifest.csv", rows, ["class", "file"])
    write_json(root / "data/raw/classes.json", CLASSES)
    params_file(
        root,
        split={"original_per_class": 6, "test_per_class": 4, "pool_per_class": pool_per_class},
        mix={"source": "pool", "mode": "add", "n_per_class": 4, "p": 0.5, **mix},
    )
    return root


def test_pool_changes_neither_original_nor_test(tmp_path):
    """Same params but pool_per_class: the same bytes in data/original and data/test."""
    trees = {}
    for n in (0, 4):
        root = make_project(tmp_path / str(n), n, source="none")
        stage(root, "split")
        trees[n] = [sha256_tree(root / "data" / side) for side in ("original", "test")]
        pool = read_csv(root / "data/pool/manifest.csv")
        assert len(pool) == (0 if n == 0 else 4)  # 2 a class left: fewer than asked, all taken
        report = read_json(root / "metrics/split.json")
        assert report["pool_per_class"] == {c: 0 if n == 0 else 2 for c in CLASSES}
    assert trees[0] == trees[4]


def test_real_stage_copies_the_pool_as_a_source_mix_takes(tmp_path):
    root = make_project(tmp_path, 4)
    stage(root, "split")
    stage(root, "real", "pool")
    out, pool = root / "data/synthetic/pool", root / "data/pool"
    rows = read_csv(out / "manifest.csv")
    assert list(rows[0]) == MANIFEST_COLUMNS and {r["model"] for r in rows} == {"real"}
    assert [r["file"] for r in rows] == [r["file"] for r in read_csv(pool / "manifest.csv")]
    assert all((out / r["file"]).read_bytes() == (pool / r["file"]).read_bytes() for r in rows)  # no re-encode
    assert len(list_images(out)) == 4 and (root / "plots/samples/pool.png").is_file()
    assert read_json(root / "metrics/real/pool.json")["per_class"] == {"cat": 2, "dog": 2}
    stage(root, "mix")
    mix = read_json(root / "metrics/mix.json")
    assert mix["composition"] == "8 real + 4 pool (p = 0.5)"  # add: k = 4 real + round(0.5 x 4) pool a class
    pooled = {r["file"] for r in read_csv(root / "data/mixed/train.csv") if r["origin"] == "synthetic"}
    assert pooled <= {f"data/synthetic/pool/{r['file']}" for r in rows}
    # p = 1 asks for 4 a class; the pool has 2: the error says which key gives more
    params_file(
        root,
        split={"original_per_class": 6, "test_per_class": 4, "pool_per_class": 4},
        mix={"source": "pool", "mode": "add", "n_per_class": 4, "p": 1.0},
    )
    failed = stage(root, "mix", check=False)
    assert failed.returncode != 0 and "raise split.pool_per_class" in failed.stderr


def test_registry_knows_the_real_kind():
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    params = parse_params(raw)
    assert params.sources.kinds()["pool"] == "real" and params.sources.stage("pool") == "real@pool"
    assert source_count(params, "pool", 120) == (params.split.pool_per_class, "split.pool_per_class")
    assert "split.pool_per_class" in more_of(params, "pool")
    with pytest.raises(ValueError, match="pool is real, not generated"):
        made_count(params, "pool")


def test_params_refuse_a_mix_larger_than_the_pool_and_a_filter_of_it():
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["mix"].update(source="pool", mode="add", n_per_class=10, p=1.0)
    with pytest.raises(ParamsError, match=r"raise split.pool_per_class to at least 10"):
        parse_params(raw)
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["sources"]["filtered"]["pool_filtered"] = {"of": "pool", "filter": "confidence", "candidates": 1.0}
    with pytest.raises(ParamsError, match=r"sources.filtered.pool_filtered.of = 'pool' is not allowed"):
        parse_params(raw)


def test_study_takes_the_pool_where_it_fits():
    """The study's check: the pool in mix.mode add at a small n_per_class; too many for the replace grid."""
    from diffaug.study.grid import check_points, grid

    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    sweeps = grid(("pool",), (0.0, 0.25, 0.5), (("scratch", None),), (0,))
    with pytest.raises(ParamsError, match=r"mix.source=pool.*raise split.pool_per_class to at least 26"):
        check_points(raw, sweeps)
    raw["mix"].update(mode="add", n_per_class=8)  # 8 real + round(p x 8) pool images, at most 4
    assert check_points(raw, sweeps) == 5  # none at p = 0, 0.25, 0.5; pool at 0.25, 0.5
