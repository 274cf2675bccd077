"""mix: exact counts per class, no replacement, validation from real images, clear errors."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from diffaug.data.mix import mix_class, synthetic_files
from diffaug.errors import DiffaugError
from diffaug.io import read_csv, sha256_file
from diffaug.rules import round_half_up
from helpers import pattern, section, write_split_folder

REPO = Path(__file__).resolve().parents[1]
REAL = [f"data/original/cat/{i:03d}.png" for i in range(40)]
SYN = [f"data/synthetic/vanilla/cat/{i:03d}.png" for i in range(50)]


def origins(pairs):
    return [o for _, o in pairs]


@pytest.mark.parametrize("p", [0.0, 0.25, 0.5, 0.75, 1.0, 0.3])
def test_replace_mode_exact_counts_without_replacement(p):
    params = section("mix", source="vanilla", p=p, n_per_class=30, val_fraction=0.25)
    train, val = mix_class("cat", REAL, SYN, params)
    assert origins(train).count("synthetic") == round_half_up(p * 30)
    assert len(train) == 30
    assert len({f for f, _ in train}) == len(train)  # without replacement
    assert len(val) == 10 and set(origins(val)) == {"original"}  # 25% of 40 real, never synthetic
    assert not {f for f, _ in val} & {f for f, _ in train}


def test_round_half_up_not_bankers():
    assert [round_half_up(x) for x in (0.5, 1.5, 2.5, 2.4999)] == [1, 2, 3, 2]


def test_only_original_baseline_keeps_the_real_part():
    train, _ = mix_class("cat", REAL, [], section("mix", source="none", p=0.5, n_per_class=30, val_fraction=0.25))
    assert len(train) == 15 and set(origins(train)) == {"original"}


def test_add_mode_puts_synthetic_on_top():
    train, _ = mix_class("cat", REAL, SYN, section("mix", source="vanilla", p=0.5, mode="add", val_fraction=0.25))
    assert origins(train).count("original") == 30 and origins(train).count("synthetic") == 15


def test_paper_mode_draws_validation_from_the_mixed_set():
    params = section("mix", source="vanilla", p=1.0, val_from="mixed", val_fraction=0.2)
    train, val = mix_class("cat", REAL, SYN, params)
    assert set(origins(val)) == {"synthetic"} and len(train) + len(val) == 40


def test_seeded():
    a = mix_class("cat", REAL, SYN, section("mix", source="vanilla", p=0.5, seed=0))
    assert a == mix_class("cat", REAL, SYN, section("mix", source="vanilla", p=0.5, seed=0))
    assert a != mix_class("cat", REAL, SYN, section("mix", source="vanilla", p=0.5, seed=1))


def test_not_enough_images_is_a_clear_error():
    with pytest.raises(DiffaugError, match=r"class 'cat' has 50 vanilla images but the mix needs 60"):
        mix_class("cat", REAL, SYN, section("mix", source="vanilla", p=1.0, n_per_class=60, val_fraction=0.0))
    with pytest.raises(DiffaugError, match=r"class 'cat' has 34 real training images but the mix needs 35"):
        mix_class("cat", REAL, SYN, section("mix", source="vanilla", p=0.0, n_per_class=35))


def test_missing_source_names_its_stage_from_the_registry():
    from diffaug.params import load_params

    sources = load_params(REPO / "params.yaml").sources
    assert [sources.stage(s) for s in ("vanilla", "dreambooth")] == [
        "generate@vanilla",
        "generate_finetuned@dreambooth",
    ]
    with pytest.raises(DiffaugError, match=r"dvc repro generate_finetuned@dreambooth"):
        synthetic_files(REPO / "nowhere", "dreambooth", ["cat"], sources.stage("dreambooth"))


def test_stage_writes_manifests_with_hashes(tmp_path):
    """The stage end to end: manifests list existing files with their hashes, nothing copied."""
    write_split_folder(
        tmp_path / "data/original",
        {"cat": [pattern(i) for i in range(20)], "dog": [pattern(100 + i) for i in range(20)]},
    )
    write_split_folder(
        tmp_path / "data/test",
        {"cat": [pattern(400 + i) for i in range(3)], "dog": [pattern(500 + i) for i in range(3)]},
    )
    for c, base in (("cat", 200), ("dog", 300)):
        (tmp_path / "data/synthetic/vanilla" / c).mkdir(parents=True)
        for i in range(10):
            pattern(base + i).save(tmp_path / f"data/synthetic/vanilla/{c}/{i}.png")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["mix"].update(source="vanilla", p=0.5, n_per_class=10)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    subprocess.run(
        [sys.executable, "-m", "diffaug.stages.mix"],
        cwd=tmp_path,
        check=True,
        env={"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin"},
    )
    rows = read_csv(tmp_path / "data/mixed/train.csv")
    assert len(rows) == 20 and sum(r["origin"] == "synthetic" for r in rows) == 10
    for r in rows + read_csv(tmp_path / "data/mixed/val.csv"):
        assert sha256_file(tmp_path / r["file"]) == r["sha256"]
    assert not list((tmp_path / "data/mixed").glob("*.png"))
    report = yaml.safe_load((tmp_path / "metrics/mix.json").read_text())
    assert report["synthetic_images"] == 10 and report["val_synthetic_images"] == 0
    assert report["composition"] == "10 real + 10 vanilla (p = 0.5)" and report["real_images"] == 10
    assert report["test_copies_excluded"] == 0


def test_balance_fills_every_class_to_the_largest():
    """Class-imbalance filling: all real images stay, synthetic ones top each class up to the largest
    class's real training images (or to mix.n_per_class)."""
    params = section("mix", source="vanilla", mode="balance", val_fraction=0.25)
    sizes = {"zero": 40, "one": 20, "two": 8}
    real = {c: [f"data/original/{c}/{i:03d}.png" for i in range(n)] for c, n in sizes.items()}
    syn = {c: [f"data/synthetic/vanilla/{c}/{i:03d}.png" for i in range(50)] for c in sizes}
    out = {c: mix_class(c, real[c], syn[c], params, n_largest=40) for c in sizes}
    for c, (train, val) in out.items():
        assert len(train) == 30  # 40 - 25% for validation
        assert origins(train).count("original") == sizes[c] - round_half_up(0.25 * sizes[c])
        assert set(origins(val)) == {"original"}
    assert origins(out["zero"][0]).count("synthetic") == 0 and origins(out["two"][0]).count("synthetic") == 24
    fixed = section("mix", source="vanilla", mode="balance", val_fraction=0.25, n_per_class=45)
    assert len(mix_class("two", real["two"], syn["two"], fixed, n_largest=40)[0]) == 45
    with pytest.raises(
        DiffaugError,
        match=r"has 50 vanilla images but the mix needs 54 \(mix.mode=balance, n=60\), "
        r"4 missing; generate more",
    ):
        mix_class("two", real["two"], syn["two"], fixed.model_copy(update={"n_per_class": 60}), n_largest=40)


def test_children_of_a_validation_image_never_reach_training():
    """img2img: a synthetic image is its parent redrawn; if the parent validates, its children may not train."""
    params = section("mix", source="img2img", p=1.0, val_fraction=0.25)
    syn = [f"data/synthetic/img2img/cat/{i:05d}.png" for i in range(80)]
    parents = {f: REAL[i % 40] for i, f in enumerate(syn)}  # two children per real image
    train, val = mix_class("cat", REAL, syn, params, parents)
    held_out = {f for f, _ in val}
    assert len(val) == 10 and len(train) == 30
    assert not {parents[f] for f, o in train if o == "synthetic"} & held_out
    # Without the grouping some child of a validation image would have been drawn (60 of 80 are usable).
    with pytest.raises(
        DiffaugError,
        match=r"has 60 usable \(children of validation images left out\) img2img images "
        r"but the mix needs 70",
    ):
        mix_class("cat", REAL, syn, params.model_copy(update={"n_per_class": 70}), parents)
