"""Params validation: a bad value stops with one sentence naming key, value and what is allowed."""

import json
import math
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from diffaug.params import ParamsError, load_params
from diffaug.rules import made_count, source_count

REPO = Path(__file__).resolve().parents[1]


def write_params(tmp_path, **overrides):
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    for dotted, value in overrides.items():
        section, _, key = dotted.partition("__")
        if key:
            raw[section][key] = value
        else:
            raw[section] = value
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_committed_params_are_valid():
    params = load_params(REPO / "params.yaml")
    assert params.mix.p == 0.0 and params.scrape.source == "digits"
    assert len(params.classes) == 10


@pytest.mark.parametrize(
    "override, words",
    [
        ({"mix__p": 1.5}, ["mix.p", "1.5", "between 0.0 and 1.0"]),
        ({"mix__p": -0.1}, ["mix.p", "-0.1"]),
        ({"mix__source": "midjourney"}, ["mix.source", "midjourney", "vanilla", "dreambooth"]),
        ({"train__epochs": -3}, ["train.epochs", "-3", "at least 1"]),
        ({"train__lr": "1e-3"}, ["train.lr", "1e-3", "1.0e-4"]),
        ({"train__regime": "linear"}, ["train.regime", "scratch", "finetune", "frozen"]),
        ({"classes": ["zero", "eleven"]}, ["classes", "eleven", "allowed"]),
        ({"classes": []}, ["classes", "at least two"]),
        ({"classes": ["zero"]}, ["classes", "at least two"]),
        ({"classes": ["one", "one"]}, ["classes", "unique"]),
        (
            {"scrape__source": "folder", "scrape__path": "no/such/folder"},
            ["scrape.path", "no/such/folder", "class sub-folders"],
        ),
        ({"split__test_per_class": 0}, ["split.test_per_class", "at least 1"]),
        ({"mix__typo": 1}, ["mix.typo", "known keys"]),
        ({"mix__val_fraction": 1.0}, ["mix.val_fraction", "1.0"]),
        ({"train__hflip": "yes"}, ["train.hflip", "true or false"]),
        ({"dreambooth__mode": "qlora"}, ["dreambooth.mode", "full", "lora"]),
        ({"dreambooth__prompt": "a photo of sks"}, ["dreambooth.prompt", "exactly one {}"]),
        ({"dreambooth__steps": 0}, ["dreambooth.steps", "at least 1"]),
        ({"dreambooth__mixed_precision": "fp8"}, ["dreambooth.mixed_precision", "bf16"]),
        ({"textual_inversion__num_vectors": 0}, ["textual_inversion.num_vectors", "at least 1"]),
        ({"textual_inversion__resolution": 100}, ["textual_inversion.resolution", "multiple of 8"]),
        ({"textual_inversion__templates": ["a {} and a {}"]}, ["textual_inversion.templates", "exactly one {}"]),
        ({"textual_inversion__prompt": "a {} {label}"}, ["textual_inversion.prompt", "{class}"]),
        ({"textual_inversion__init_reg": -1.0}, ["textual_inversion.init_reg", "at least 0"]),
        ({"dreambooth__prompt": "a {} {class}"}, ["dreambooth.prompt", "only {}"]),
        ({"train__momentum": 1.5}, ["train.momentum", "less than 1"]),
        ({"split__seed": -1}, ["split.seed", "at least 0"]),
        ({"base__model": "../x"}, ["base.model", "../x", "hub id"]),
        ({"generate__launcher": "python; rm -rf /"}, ["generate.launcher", "accelerate launch"]),
        ({"train__epochs": "3"}, ["train.epochs", "whole number"]),
        ({"mix__source": "dreambooth_lora"}, ["mix.source", "none, vanilla, dreambooth, textual_inversion"]),
        ({"study__sources": ["none"]}, ["study.sources", "vanilla"]),
    ],
)
def test_bad_values_name_key_value_and_fix(tmp_path, override, words):
    with pytest.raises(ParamsError) as info:
        load_params(write_params(tmp_path, **override))
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message


def test_int_accepted_for_float(tmp_path):
    # `dvc exp run -S mix.p=1` writes an int.
    assert load_params(write_params(tmp_path, mix__p=1)).mix.p == 1.0


def test_stage_fails_fast_and_touches_nothing(tmp_path):
    """A stage with a bad param exits 2 with one line on stderr, before writing any output."""
    write_params(tmp_path, mix__p=1.5)
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "diffaug.stages.scrape"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert proc.stderr.startswith("error: params.yaml: mix.p = 1.5")
    assert time.perf_counter() - start < 10
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


def test_check_stage_says_how_to_restore_params_a_refused_experiment_left(tmp_path):
    # `dvc exp run -S mix.p=1.5` writes the value into params.yaml before `check` runs, and leaves it there
    # when the run is refused (checked on DVC 3.67), so the next `dvc repro` fails on it again.
    write_params(tmp_path, mix__p=1.5)
    proc = subprocess.run(
        [sys.executable, "-m", "diffaug.stages.check"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("error: params.yaml: mix.p = 1.5 is not allowed; use a proportion between 0.0 and 1.0")
    assert "dvc exp run -S" in line and "leaves" in line and "git checkout params.yaml" in line
    assert line.endswith(".") and line.count(". ") == 0  # one sentence
    assert not (tmp_path / "params.checked").exists()


def test_a_missing_key_names_it_and_the_only_place_defaults_live(tmp_path):
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    del raw["train"]["lr"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ParamsError, match=r"train\.lr is missing; params\.yaml is the only place defaults are written"):
        load_params(tmp_path / "params.yaml")


@pytest.mark.parametrize(
    "name, words",
    [
        ("red circle", None),
        ("quadrat_ä", None),
        ("Golden Retriever", None),
        ("jack-o'-lantern", None),
        (" cat", "spaces at its start or end"),
        ("   ", "visible character"),
        ("a/b", "may not hold"),
        ('say "hi"', "may not hold"),
        ("$HOME", "may not hold"),
        (".hidden", "hidden file"),
        ("manifest.csv", "manifest"),
        ("Classes.json", "manifest"),
        ("tab\there", "printable"),
        ("cafe\u0301", "composed (NFC) form"),
        ("x" * 201, "200 bytes"),
    ],
)
def test_class_names_any_folder_can_hold(tmp_path, name, words):
    path = folder_dataset_params(tmp_path, [name, "other"])
    if words is None:
        assert load_params(path).classes[0] == name
        return
    with pytest.raises(ParamsError, match=re.escape(words)):
        load_params(path)


def folder_dataset_params(tmp_path, classes):
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["classes"] = classes
    raw["scrape"].update(source="folder", path=str(tmp_path))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw, allow_unicode=True))
    return tmp_path / "params.yaml"


@pytest.mark.parametrize(
    "classes, words",
    [
        (["Cat", "cat"], "the same name up to case as 'Cat'"),
        (["caf\u00e9", "CAF\u00c9"], "the same name up to case"),
        (["hot dog", "hot-dog"], "token <hot-dog> is also 'hot dog'"),
    ],
)
def test_colliding_class_names_are_named_together(tmp_path, classes, words):
    with pytest.raises(ParamsError, match=re.escape(words)):
        load_params(folder_dataset_params(tmp_path, classes))


def test_the_default_grid_fits_the_synthetic_sets():
    """Every p the default mix and study ask for fits the synthetic sets the committed pipeline wrote, counted
    from its metrics, not by the params check: round(p x n) synthetic images a class, n the real training
    images a class the mix stage took (at the committed p = 0), against the images a class each source wrote
    and the mix may use."""
    params = load_params(REPO / "params.yaml")
    k = len(params.classes)
    mix, split = (json.loads((REPO / f"metrics/{m}.json").read_text()) for m in ("mix", "split"))
    assert mix["synthetic_images"] == 0, "metrics/mix.json is not of the committed p = 0"
    n, n_val = mix["real_images"] / k, mix["val_images"] / k  # 102 and 18 of 120 originals a class
    usable = {}
    for name in [*params.sources.txt2img, *params.sources.finetuned]:
        usable[name] = json.loads((REPO / f"metrics/generate/{name}.json").read_text())["images"] / k
    for name in params.sources.img2img:  # each real image's children: those of validation parents are never used
        children = json.loads((REPO / f"metrics/generate/{name}.json").read_text())["images"] / k
        per_parent = children / (split["original_images"] / k)
        assert per_parent == int(per_parent), "img2img cycles its parents unevenly: count its children per parent"
        usable[name] = children - per_parent * n_val
    for name in params.sources.filtered:  # what the filter kept, in its thinnest class
        kept = json.loads((REPO / f"metrics/filter/{name}.json").read_text())["per_class"]
        usable[name] = min(c["kept"] for c in kept.values())
    assert set(usable) >= set(params.study.sources) and (n, n_val) == (102, 18)
    for p in params.study.p + [params.mix.p]:
        need = math.floor(p * n + 0.5)  # round half up
        short = {name: have for name, have in usable.items() if have < need}
        assert not short, f"p = {p} needs {need} synthetic images a class; {short} have fewer"


def test_a_study_p_the_sets_cannot_fill_names_both_keys(tmp_path):
    with pytest.raises(ParamsError) as info:
        load_params(write_params(tmp_path, generate__per_class=100))
    message = str(info.value)
    assert message.startswith("params.yaml: study.p = 1.0 is not allowed") and "generate.per_class = 100" in message
    assert "round(1 x 102) = 102" in message and "raise generate.per_class to at least 102" in message
    with pytest.raises(ParamsError, match=r"mix\.n_per_class = 500 is not allowed.*102 \(split\.original_per_class"):
        load_params(write_params(tmp_path, mix__n_per_class=500, mix__mode="add"))


def test_new_sources_count_what_a_mix_can_use(tmp_path):
    """img2img: children of validation parents do not count; a filtered source counts as its source's own
    count, which makes `candidates` times more."""
    params = load_params(REPO / "params.yaml")
    assert made_count(params, "vanilla") == 2 * params.generate.per_class  # vanilla_filtered's candidates: 2.0
    assert made_count(params, "dreambooth") == params.generate.per_class
    assert source_count(params, "vanilla_filtered", 120, 18) == (params.generate.per_class, "generate.per_class")
    assert source_count(params, "img2img", 120, 18) == (102, "img2img.per_class")  # 120 children, 18 to validation
    assert source_count(params, "img2img", 50, 8) == (120 - 8 * 3, "img2img.per_class")  # 20 parents with 3 children
    with pytest.raises(ParamsError) as info:
        load_params(write_params(tmp_path, img2img__per_class=110))
    message = str(info.value)
    assert message.startswith("params.yaml: study.p = 1.0 is not allowed") and "102 img2img images" in message
    assert "img2img.per_class = 110, which gives 92 a mix can use; raise img2img.per_class" in message
    with pytest.raises(ParamsError, match=r"set exactly one of img2img.per_image .* and img2img.per_class"):
        load_params(write_params(tmp_path, img2img__per_image=2))
    with pytest.raises(ParamsError, match=r"sources.filtered.f.of = 'nothing' is not allowed; name a txt2img"):
        raw = yaml.safe_load((REPO / "params.yaml").read_text())
        raw["sources"]["filtered"]["f"] = {"of": "nothing", "filter": "confidence", "candidates": 1.0}
        load_params(write_params(tmp_path, sources=raw["sources"]))


def test_balance_with_an_imbalanced_split_is_checked_for_the_smallest_class(tmp_path):
    load_params(
        write_params(
            tmp_path, split__imbalance=0.5, mix__mode="balance", mix__source="img2img", study__sources=["vanilla"]
        )
    )
    with pytest.raises(
        ParamsError, match=r"mix.mode = 'balance' is not allowed; the mix needs 102 - 51 = 51 dreambooth"
    ):
        load_params(
            write_params(
                tmp_path,
                split__imbalance=0.5,
                mix__mode="balance",
                mix__source="dreambooth",
                generate__per_class=40,
                study__sources=[],
            )
        )
    with pytest.raises(ParamsError, match=r"split.imbalance = 0.5 is not allowed; an imbalanced split needs"):
        load_params(write_params(tmp_path, split__imbalance=0.5, split__original_per_class=None))
