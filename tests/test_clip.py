"""Zero-shot CLIP with a tiny random CLIP built in code (no download), and its offline message."""

import json

import pytest
import torch

from diffaug.errors import DiffaugError
from helpers import params_file, pattern, write_split_folder


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    """A CLIPModel + CLIPProcessor folder, as `save_pretrained` writes a hub model."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    from diffaug.diffusion.tiny.tokenizer import build_tokenizer

    folder = tmp_path_factory.mktemp("clip")
    tokenizer = build_tokenizer(folder / "tokenizer")
    text = dict(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        max_position_embeddings=16,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    vision = dict(
        image_size=32, patch_size=8, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2
    )
    torch.manual_seed(0)
    model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16))
    model.save_pretrained(folder / "model")
    image_processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder / "model")
    return folder / "model"


def test_clip_stage_scores_the_test_set_with_clips_own_preprocessing(tiny_clip, tmp_path, monkeypatch):
    from diffaug.classify.clip import load_clip
    from diffaug.stages import clip_zero_shot

    _, processor = load_clip(str(tiny_clip), "main")
    assert processor.image_processor.do_normalize  # CLIP's mean/std, which the paper's code skipped
    write_split_folder(
        tmp_path / "data/test", {"zero": [pattern(i) for i in range(3)], "one": [pattern(10 + i) for i in range(3)]}
    )
    params_file(tmp_path, clip={"model": str(tiny_clip), "device": "cpu", "batch_size": 4})
    monkeypatch.chdir(tmp_path)
    clip_zero_shot.main()
    report = json.loads((tmp_path / "metrics/clip.json").read_text())
    assert report["test_images"] == 6 and 0.0 <= report["accuracy"] <= 1.0
    assert set(report["per_class_accuracy"]) == {"zero", "one"} and report["template"] == "a photo of a {}"


def test_clip_skipped_by_default(tmp_path, monkeypatch):
    from diffaug.stages import clip_zero_shot

    params_file(tmp_path)
    monkeypatch.chdir(tmp_path)
    clip_zero_shot.main()
    assert json.loads((tmp_path / "metrics/clip.json").read_text())["model"] is None


def test_missing_clip_weights_offline_say_how_to_fetch_them(tmp_path, monkeypatch):
    import huggingface_hub.constants

    from diffaug.classify.clip import load_clip

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read at import: set it here
    with pytest.raises(DiffaugError) as info:
        load_clip("openai/clip-vit-base-patch32", "3d74acf9a28c67741b2f4f2ea7635f0aaf6f0268")
    message = str(info.value)
    assert "hf download openai/clip-vit-base-patch32 --revision 3d74acf9a28c67741b2f4f2ea7635f0aaf6f0268" in message
    assert "clip.model: null" in message


def _filter_workspace(tmp_path, clip_model):
    """A vanilla source of 2 x 4 images, d_original, and params with a clip-filtered source of it."""
    import yaml

    from diffaug.io import read_csv, write_csv

    write_split_folder(
        tmp_path / "data/original", {"zero": [pattern(i) for i in range(2)], "one": [pattern(10 + i) for i in range(2)]}
    )
    write_split_folder(
        tmp_path / "data/synthetic/vanilla",
        {"zero": [pattern(20 + i) for i in range(4)], "one": [pattern(30 + i) for i in range(4)]},
    )
    rows = [
        dict(r, prompt="p", seed=i) for i, r in enumerate(read_csv(tmp_path / "data/synthetic/vanilla/manifest.csv"))
    ]
    write_csv(tmp_path / "data/synthetic/vanilla/manifest.csv", rows, list(rows[0]))
    path = params_file(
        tmp_path,
        classes=["zero", "one"],
        clip={"model": clip_model, "device": "cpu"},
        filter={"device": "cpu"},
        split={"original_per_class": 2, "test_per_class": 1},
        dreambooth={"instance_images": 1},
        textual_inversion={"images": 1},
        study={"sources": []},
        mix={"val_fraction": 0.0},
    )
    raw = yaml.safe_load(path.read_text())
    raw["sources"]["filtered"] = {"vanilla_clip": {"of": "vanilla", "filter": "clip", "candidates": 1.0}}
    path.write_text(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False))


def test_clip_filter_keeps_the_images_clip_gives_their_class_over_one_in_classes(tiny_clip, tmp_path, monkeypatch):
    import numpy as np

    from diffaug.classify.clip import clip_probabilities, load_clip
    from diffaug.io import read_csv
    from diffaug.stages import filter as filter_stage

    _filter_workspace(tmp_path, str(tiny_clip))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.argv", ["filter", "vanilla_clip"])
    filter_stage.main()
    rows = read_csv(tmp_path / "data/synthetic/vanilla/manifest.csv")
    model, processor = load_clip(str(tiny_clip), "main")
    probs = clip_probabilities(
        model,
        processor,
        [tmp_path / "data/synthetic/vanilla" / r["file"] for r in rows],
        ["zero", "one"],
        "a photo of a {}",
        4,
        torch.device("cpu"),
    )
    own = probs[np.arange(len(rows)), [["zero", "one"].index(r["class"]) for r in rows]]
    kept = {r["file"] for r in read_csv(tmp_path / "data/synthetic/vanilla_clip/manifest.csv")}
    assert kept == {r["file"] for r, p in zip(rows, own) if p >= 0.5}
    assert all((tmp_path / "data/synthetic/vanilla_clip" / f).is_file() for f in kept)
    report = json.loads((tmp_path / "metrics/filter/vanilla_clip.json").read_text())
    assert report["threshold"] == 0.5 and report["kept"] == len(kept) and report["candidates"] == 8
    assert {c: v["kept"] + v["dropped"] for c, v in report["per_class"].items()} == {"zero": 4, "one": 4}


def test_clip_filter_without_weights_is_skipped_with_a_note(tmp_path, monkeypatch, capsys):
    from diffaug.stages import filter as filter_stage

    _filter_workspace(tmp_path, None)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.argv", ["filter", "vanilla_clip"])
    filter_stage.main()
    assert "skipped" in json.loads((tmp_path / "metrics/filter/vanilla_clip.json").read_text())
    assert "set clip.model" in capsys.readouterr().out
    assert not list((tmp_path / "data/synthetic/vanilla_clip").rglob("*.png"))
