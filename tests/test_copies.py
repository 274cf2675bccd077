"""Copies and leaks: planted near duplicates of d_test and d_original images are found (pHash and features,
per class), genuine different digits are not, and `mix` leaves test near duplicates out of training."""

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageEnhance

from diffaug.data.images import phash
from diffaug.io import read_csv, write_csv
from diffaug.metrics.copies import copy_shares, near_copies, nearest_cosine, nearest_hamming
from helpers import params_file, save_random_reference, write_split_folder

REPO = Path(__file__).resolve().parents[1]
CLASSES = ["zero", "one"]
N = 8  # real images per class in each of d_test and d_original


def digit_images() -> dict[str, list[Image.Image]]:
    """scikit-learn's digits as the built-in scrape makes them (32 px, dark ink on white)."""
    from diffaug.data.scrape import digits

    out = {c: [] for c in CLASSES}
    for cand in digits(tuple(CLASSES), 32):
        out[cand.label].append(cand.image)
    return out


def resized(im):  # x2 and back
    return im.resize((64, 64), Image.Resampling.BICUBIC).resize(im.size, Image.Resampling.BICUBIC)


def jpeg(im):  # re-compressed at quality 75
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=75)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def darker(im):  # a small brightness change
    return ImageEnhance.Brightness(im).enhance(0.95)


ALTERED = {"exact": lambda im: im.copy(), "resized": resized, "jpeg": jpeg, "darker": darker}


def clean(pool: list[Image.Image], references: list[Image.Image], k: int) -> list[Image.Image]:
    """`k` digits of `pool` that are genuinely other images: pHash at least 6 bits from every reference."""
    near = nearest_hamming(
        np.array([phash(im) for im in pool], dtype=np.uint64),
        np.array([phash(im) for im in references], dtype=np.uint64),
    )
    chosen = [im for im, d in zip(pool, near) if d >= 6][:k]
    assert len(chosen) == k
    return chosen


@pytest.fixture(scope="module")
def planted():
    """d_test, d_original and a synthetic set: class zero holds the 4 kinds of copies of test images 0-3 (of both
    classes' test sets, a leak crosses labels), class one those of d_original images, each beside 6 clean digits."""
    images = digit_images()
    test = {c: images[c][:N] for c in CLASSES}
    original = {c: images[c][N : 2 * N] for c in CLASSES}
    references = [im for c in CLASSES for im in test[c] + original[c]]
    synthetic = {
        "zero": [f(test["zero" if i % 2 else "one"][i]) for i, f in enumerate(ALTERED.values())],
        "one": [f(original["one"][i]) for i, f in enumerate(ALTERED.values())],
    }
    for c in CLASSES:
        synthetic[c] += clean(images[c][2 * N :], references, 6)
    return test, original, synthetic


def save_set(root: Path, images: dict[str, list[Image.Image]]) -> dict[str, list[str]]:
    rows, files = [], {}
    for c, ims in images.items():
        (root / c).mkdir(parents=True, exist_ok=True)
        for i, im in enumerate(ims):
            im.save(root / c / f"{i:04d}.png")
            rows.append({"class": c, "file": f"{c}/{i:04d}.png"})
        files[c] = [str(root / c / f"{i:04d}.png") for i in range(len(ims))]
    write_csv(root / "manifest.csv", rows, ["class", "file"])
    return files


def test_every_altered_copy_stays_within_the_default_phash_distance(planted):
    from helpers import section

    test, _, _ = planted
    distance = section("copies").phash_distance
    for name, alter in ALTERED.items():
        for im in test["zero"]:
            assert bin(phash(im) ^ phash(alter(im))).count("1") <= distance, name


def test_near_copies_finds_the_planted_test_copies_of_any_class(planted, tmp_path):
    test, _, synthetic = planted
    files = save_set(tmp_path / "synthetic", synthetic)
    test_files = [f for fs in save_set(tmp_path / "test", test).values() for f in fs]
    found = near_copies(files, test_files, 2)
    assert found == {"zero": files["zero"][:4], "one": []}  # the clean digits and d_original's copies: none


def test_features_flag_what_the_hash_misses():
    """The feature test alone: a vector close to a reference's in cosine distance counts, a far one does not."""
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(5, 16))
    near, far = 3.0 * ref[2] + 1e-3 * rng.normal(size=16), rng.normal(size=16)  # scale does not matter
    assert nearest_cosine(np.stack([near, far]), ref)[0] < 1e-5 and nearest_cosine(far[None], ref)[0] > 0.1
    hashes = {"zero": np.array([1, 2], dtype=np.uint64)}
    refs = {"test": (np.array([2**63 - 1], dtype=np.uint64), ref)}  # no hash within 2 bits
    out = copy_shares(hashes, {"zero": np.stack([near, far])}, refs, 2, 0.01)
    assert out["test"] == {"share": 0.5, "phash": 0.0, "feature": 0.5, "images": 2, "copies": 1}
    assert out["per_class"] == {"zero": {"test": 0.5}}
    assert copy_shares(hashes, None, refs, 2, 0.01)["test"]["share"] == 0.0  # no features: pHash only


def make_project(root: Path, planted) -> None:
    """data/original, data/test, data/synthetic/vanilla (with the planted copies), a random-weight reference."""
    test, original, synthetic = planted
    write_split_folder(root / "data/original", original)
    write_split_folder(root / "data/test", test)
    save_set(root / "data/synthetic/vanilla", synthetic)
    save_random_reference(root / "models/reference", CLASSES)
    # feature_distance 1e-6: a random network maps all digits close together; the feature test itself is above
    params_file(
        root,
        classes=CLASSES,
        scrape={"source": "folder", "path": str(root)},
        mix={"source": "vanilla", "p": 1.0, "n_per_class": 6, "val_fraction": 0.0},
        split={"original_per_class": None, "test_per_class": 4},
        fid={"kid_subsets": 4, "kid_subset_size": 50, "device": "cpu"},
        train={"device": "cpu"},
        copies={"phash_distance": 2, "feature_distance": 1e-6, "flag_share": 0.05},
    )


def test_measure_reports_test_and_original_copies_per_class(planted, tmp_path, monkeypatch):
    from diffaug.stages import fid_reference, measure

    make_project(tmp_path, planted)
    monkeypatch.chdir(tmp_path)
    fid_reference.main()
    monkeypatch.setattr(sys, "argv", ["measure", "vanilla"])
    measure.main()
    out = tmp_path / "metrics/copies/vanilla.json"
    report = json.loads(out.read_text())
    # 4 test copies among 20 images (all in class zero), 4 d_original copies (all in class one); exact copies
    # also match in features, so the feature share is at least the exact ones' (1 of each kind).
    assert report["test"]["copies"] == 4 and report["test"]["share"] == 0.2 and report["test"]["phash"] == 0.2
    assert report["original"]["copies"] == 4 and report["original"]["images"] == 20
    assert 0.05 <= report["test"]["feature"] <= 0.2
    assert report["per_class"] == {"zero": {"test": 0.4, "original": 0.0}, "one": {"test": 0.0, "original": 0.4}}
    assert report["flag_share"] == 0.05 and report["phash_distance"] == 2
    first = out.read_bytes()
    measure.main()
    assert out.read_bytes() == first  # same inputs, same bytes


def run_mix(root: Path, exclude: bool, n: int = 6) -> None:
    params_file(
        root,
        classes=CLASSES,
        mix={"source": "vanilla", "p": 1.0, "n_per_class": n, "val_fraction": 0.0, "exclude_test_copies": exclude},
        split={"original_per_class": None, "test_per_class": 4},
    )
    subprocess.run(
        [sys.executable, "-m", "diffaug.stages.mix"],
        cwd=root,
        check=True,
        capture_output=True,
        env={"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin"},
    )


def test_mix_leaves_test_copies_out_and_counts_them(planted, tmp_path):
    test, original, synthetic = planted
    make_project(tmp_path, planted)
    run_mix(tmp_path, exclude=True)
    trained = {r["file"] for r in read_csv(tmp_path / "data/mixed/train.csv")}
    copies = {f"data/synthetic/vanilla/zero/{i:04d}.png" for i in range(4)}
    assert not trained & copies and len(trained) == 12  # class zero: its 6 clean digits, p = 1
    report = json.loads((tmp_path / "data/mixed/report.json").read_text())
    assert report["zero"]["test_copies_excluded"] == 4 and "test_copies_excluded" not in report["one"]
    assert json.loads((tmp_path / "metrics/mix.json").read_text())["test_copies_excluded"] == 4
    run_mix(tmp_path, exclude=False)  # the check off: the copies are drawn
    assert copies & {r["file"] for r in read_csv(tmp_path / "data/mixed/train.csv")}
    assert json.loads((tmp_path / "metrics/mix.json").read_text())["test_copies_excluded"] == 0


def test_mix_without_copies_is_the_same_bytes_with_the_check_on_or_off(planted, tmp_path):
    test, original, synthetic = planted
    make_project(tmp_path, (test, original, {c: ims[4:] for c, ims in synthetic.items()}))  # clean digits only
    outputs = []
    for exclude in (False, True):
        run_mix(tmp_path, exclude, n=3)  # 3 of the 6: the seeded draw matters
        outputs.append({f.name: f.read_bytes() for f in sorted((tmp_path / "data/mixed").iterdir())})
    assert outputs[0] == outputs[1]


def copies_result(test_share, original_share):
    part = lambda share: {
        "share": share,
        "phash": share,
        "feature": share / 2,
        "images": 20,  # noqa: E731
        "copies": round(20 * share),
    }
    return {
        "test": part(test_share),
        "original": part(original_share),
        "flag_share": 0.05,
        "phash_distance": 2,
        "feature_distance": 0.01,
        "extractor": "reference",
        "per_class": {c: {"test": test_share, "original": original_share} for c in CLASSES},
    }


def test_report_tables_the_copies_per_source_and_flags_a_leak():
    from test_report import metrics, params, rev

    from diffaug.study.experiments import experiments
    from diffaug.study.report.analysis import analyse
    from diffaug.study.report.summary import summary_json, summary_md

    mets = {
        **metrics(0.9),
        "metrics/copies/vanilla.json": copies_result(0.0, 0.05),
        "metrics/copies/dreambooth.json": copies_result(0.1, 0.4),
    }
    analysis = analyse(experiments([rev("vanilla-0.5-0", params("vanilla", 0.5, 0), mets)]))
    md = summary_md(analysis, [])
    assert "## Copies and leaks" in md
    assert "| vanilla | 0.0% (pHash 0.0%, features 0.0%) | 5.0% (pHash 5.0%, features 2.5%) | no |" in md
    assert (
        "| dreambooth | 10.0% (pHash 10.0%, features 5.0%) | 40.0% (pHash 40.0%, features 20.0%) | "
        "**yes** (> 5.0%) |" in md
    )
    assert md.index("| vanilla |", md.index("## Copies")) < md.index("| dreambooth |", md.index("## Copies"))
    data = summary_json(analysis)["copies"]
    assert data["dreambooth"]["flagged"] and not data["vanilla"]["flagged"]
    assert data["dreambooth"]["test"]["copies"] == 2
