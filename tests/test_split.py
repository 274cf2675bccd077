"""split: seeded per-class counts, and no near-duplicate of a test image in d_original."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageEnhance

from diffaug.data.images import hamming_matrix, phash
from diffaug.data.split import draw_pool, split
from diffaug.errors import DiffaugError
from diffaug.rules import imbalance_sizes
from helpers import pattern, section


def make_raw(tmp_path: Path, twins: bool) -> tuple[Path, list[dict]]:
    """Two classes of 12 images; with `twins`, every image also has a re-encoded, brightened twin."""
    rows = []
    for k, c in enumerate(["cat", "dog"]):
        (tmp_path / c).mkdir()
        for i in range(12):
            im = pattern(100 * k + i)
            variants = [im]
            if twins:  # what a re-upload looks like: rescaled and slightly brighter
                variants.append(ImageEnhance.Brightness(im.resize((40, 40)).resize((32, 32))).enhance(1.05))
            for j, v in enumerate(variants):
                name = f"{c}/{i:02d}_{j}.png"
                v.save(tmp_path / name)
                rows.append({"class": c, "file": name})
    return tmp_path, rows


def test_counts_and_seeded(tmp_path):
    raw, rows = make_raw(tmp_path, twins=False)
    params = section("split", original_per_class=6, test_per_class=4, dedupe_distance=4, seed=1)
    original, test, report = split(raw, rows, ("cat", "dog"), params)
    assert {c: len(v) for c, v in original.items()} == {"cat": 6, "dog": 6}
    assert {c: len(v) for c, v in test.items()} == {"cat": 4, "dog": 4}
    for c in ("cat", "dog"):
        assert not set(original[c]) & set(test[c])
        assert all(f.startswith(c + "/") for f in original[c] + test[c])
    assert split(raw, rows, ("cat", "dog"), params)[:2] == (original, test)
    other = split(raw, rows, ("cat", "dog"), section("split", original_per_class=6, test_per_class=4, seed=2))
    assert other[1] != test
    assert report["near_duplicates_removed"] == 0


def test_near_duplicates_of_test_images_never_reach_original(tmp_path):
    raw, rows = make_raw(tmp_path, twins=True)
    params = section("split", original_per_class=None, test_per_class=6, dedupe_distance=6, seed=0)
    original, test, report = split(raw, rows, ("cat", "dog"), params)

    def hashes(files):
        return np.array([phash(Image.open(raw / f)) for f in files], dtype=np.uint64)

    test_h = hashes([f for c in test for f in test[c]])
    for c in original:
        assert hamming_matrix(hashes(original[c]), test_h).min() > params.dedupe_distance
        # every twin of a test image was held back: the pool held 24 - 6 = 18 per class
        twins_in_pool = sum(1 for f in test[c] if (f[:-5] + ("1" if f[-5] == "0" else "0") + ".png") not in test[c])
        assert report["near_duplicates_removed_per_class"][c] == twins_in_pool
        assert len(original[c]) == 18 - twins_in_pool
    assert report["near_duplicates_removed"] > 0


def test_not_enough_images_names_class_and_fix(tmp_path):
    raw, rows = make_raw(tmp_path, twins=False)
    with pytest.raises(DiffaugError, match=r"class 'cat'.*split.original_per_class"):
        split(raw, rows, ("cat", "dog"), section("split", original_per_class=9, test_per_class=4))
    with pytest.raises(DiffaugError, match=r"class 'cat' has 12 images.*split.test_per_class"):
        split(raw, rows, ("cat", "dog"), section("split", original_per_class=None, test_per_class=12))


def test_imbalance_makes_a_long_tail_of_the_balanced_split(tmp_path):
    """n_c = n_max * r^(c/(C-1)): the first class keeps n_max, the last n_max * r; the test set stays balanced
    and each class's d_original is a part of the balanced one."""
    raw, rows = make_raw(tmp_path, twins=False)
    balanced = split(raw, rows, ("cat", "dog"), section("split", original_per_class=8, test_per_class=4))
    long_tail = split(
        raw, rows, ("cat", "dog"), section("split", original_per_class=8, test_per_class=4, imbalance=0.25)
    )
    assert {c: len(v) for c, v in long_tail[0].items()} == {"cat": 8, "dog": 2}
    assert long_tail[1] == balanced[1] and set(long_tail[0]["dog"]) <= set(balanced[0]["dog"])
    assert imbalance_sizes(section("split", imbalance=0.1), 120, 10) == [120, 93, 72, 56, 43, 33, 26, 20, 15, 12]


def test_pool_takes_leftovers_far_from_original_and_test(tmp_path):
    """The pool shares no file and no near-duplicate with d_original or d_test; a class with fewer leftovers
    than asked gives what it has; the same params give the same pool."""
    raw, rows = make_raw(tmp_path, twins=True)
    params = section("split", original_per_class=8, test_per_class=6, dedupe_distance=6, seed=3, pool_per_class=20)
    original, test, _ = split(raw, rows, ("cat", "dog"), params)
    pool, report = draw_pool(raw, rows, ("cat", "dog"), params, original, test)

    def hashes(files):
        return np.array([phash(Image.open(raw / f)) for f in files], dtype=np.uint64)

    kept = [f for side in (original, test) for c in side for f in side[c]]
    for c in ("cat", "dog"):
        assert pool[c] and not set(pool[c]) & set(kept) and all(f.startswith(c + "/") for f in pool[c])
        assert hamming_matrix(hashes(pool[c]), hashes(kept)).min() > params.dedupe_distance
        # 24 images a class, 14 taken; each taken image's twin is a near-duplicate: fewer than 20 are left
        assert report["pool_per_class"][c] == len(pool[c]) < 10
    assert report["pool_near_duplicates_removed"] > 0
    assert draw_pool(raw, rows, ("cat", "dog"), params, original, test) == (pool, report)
    two = draw_pool(raw, rows, ("cat", "dog"), params.model_copy(update={"pool_per_class": 1}), original, test)[0]
    assert all(len(two[c]) == 1 for c in two)


def test_pool_leaves_original_and_test_alone(tmp_path):
    raw, rows = make_raw(tmp_path, twins=False)
    base = dict(original_per_class=6, test_per_class=4, seed=1)
    without = split(raw, rows, ("cat", "dog"), section("split", **base, pool_per_class=0))
    with_pool = split(raw, rows, ("cat", "dog"), section("split", **base, pool_per_class=2))
    assert with_pool == without
    pool, report = draw_pool(raw, rows, ("cat", "dog"), section("split", **base, pool_per_class=2), *with_pool[:2])
    assert report["pool_per_class"] == {"cat": 2, "dog": 2}
    empty = draw_pool(raw, rows, ("cat", "dog"), section("split", **base, pool_per_class=0), *without[:2])
    assert empty == (
        {"cat": [], "dog": []},
        {"pool_per_class": {"cat": 0, "dog": 0}, "pool_near_duplicates_removed": 0},
    )
