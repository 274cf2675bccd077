"""cost_summary: device-hours per stage and seconds per synthetic image from the stages' metrics."""

import json

import pytest

from diffaug.study.cost import cost_summary


def put(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def test_cost_summary_adds_generation_and_finetuning(tmp_path):
    gpu = "NVIDIA A100-SXM4-80GB"
    put(
        tmp_path / "generate/vanilla.json",
        {"images": 7000, "generated": 7000, "seconds": 3600.0, "device": gpu, "processes": 2},
    )
    put(
        tmp_path / "generate/dreambooth.json",
        {"images": 100, "generated": 50, "seconds": 100.0, "device": gpu, "processes": 1},
    )
    for c in ("cat", "dog"):
        put(tmp_path / f"dreambooth/{c}.json", {"seconds": 1800.0, "device": gpu, "steps_per_second": 1.0})
    put(tmp_path / "generate/textual_inversion.json", {"images": 10, "generated": 0, "seconds": 0.1, "device": "cpu"})
    put(tmp_path / "train/metrics.json", {"seconds": 360.0, "device": "cpu"})
    (tmp_path / "generate/broken.json").write_text("{not json")
    put(tmp_path / "filter/vanilla_filtered.json", {"candidates": 7000, "kept": 3500, "seconds": 35.0, "device": "cpu"})
    s = cost_summary(
        tmp_path,
        {"dreambooth": "dreambooth", "textual_inversion": "textual_inversion"},
        {"vanilla_filtered": "vanilla"},
    )
    # a kept image costs two candidates and its share of the filter
    assert s["sources"]["vanilla_filtered"]["seconds_per_image"] == round(2 * round(7200 / 7000, 3) + 35 / 3500, 3)
    assert s["sources"]["vanilla"]["generation_hours"] == 2.0  # 1 h on each of 2 GPUs
    assert s["sources"]["vanilla"]["seconds_per_image"] == round(7200 / 7000, 3)
    db = s["sources"]["dreambooth"]
    assert db["finetune_hours"] == 1.0 and db["seconds_per_image"] == 100 / 50 + 3600 / 100
    assert s["sources"]["textual_inversion"]["seconds_per_image"] == "cached"  # all from the cache: no timing
    assert s["gpu_hours"] == round(2.0 + 100 / 3600 + 1.0, 4)
    assert s["cpu_hours"] == pytest.approx((0.1 + 360 + 35) / 3600, abs=2e-4)  # each stage rounded to 4 digits
    assert set(s["stages"]) == {
        "generate@vanilla",
        "generate@dreambooth",
        "generate@textual_inversion",
        "train_dreambooth@cat",
        "train_dreambooth@dog",
        "train",
        "filter@vanilla_filtered",
    }


def test_cost_summary_of_an_empty_folder(tmp_path):
    assert cost_summary(tmp_path / "nothing", {}, {}) == {
        "stages": {},
        "sources": {},
        "gpu_hours": 0.0,
        "cpu_hours": 0.0,
    }


def test_images_from_the_cache_say_so_and_so_does_their_filtered_source(tmp_path):
    put(
        tmp_path / "generate/vanilla.json",
        {"images": 40, "generated": 0, "reused": 40, "seconds": 0.0, "device": "cpu"},
    )
    put(tmp_path / "generate/empty.json", {"images": 0, "generated": 0, "reused": 0, "seconds": 0.0, "device": "cpu"})
    put(tmp_path / "filter/vanilla_filtered.json", {"candidates": 40, "kept": 20, "seconds": 2.0, "device": "cpu"})
    s = cost_summary(tmp_path, {}, {"vanilla_filtered": "vanilla"})["sources"]
    assert s["vanilla"]["seconds_per_image"] == s["vanilla_filtered"]["seconds_per_image"] == "cached"
    assert s["vanilla_filtered"]["filter_hours"] == round(2 / 3600, 4)
    assert s["empty"]["seconds_per_image"] is None  # no image at all: nothing to time
