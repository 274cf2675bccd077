"""The built-in tiny base model: a real SD pipeline, trained deterministically, with its own tokenizer."""

import hashlib
from pathlib import Path

import numpy as np
import torch

from diffaug.diffusion.tiny.pretrain import pretrain
from diffaug.diffusion.tiny.render import render_digit
from diffaug.diffusion.tiny.tokenizer import build_tokenizer
from diffaug.params import DIGIT_WORDS

SMALL = dict(n_images=64, vae_steps=3, vae_batch=8, unet_steps=3, unet_batch=8)


def files_digest(folder: Path) -> dict:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_pretrain_is_deterministic_and_loads_as_a_pipeline(tmp_path):
    from diffusers import StableDiffusionPipeline

    a = pretrain(tmp_path / "a", seed=0, log=lambda *_: None, **SMALL)
    pretrain(tmp_path / "b", seed=0, log=lambda *_: None, **SMALL)
    assert files_digest(tmp_path / "a") == files_digest(tmp_path / "b")
    assert any(f.endswith(".safetensors") for f in files_digest(tmp_path / "a"))
    assert a["params"]["unet"] > 100_000
    pipe = StableDiffusionPipeline.from_pretrained(tmp_path / "a", use_safetensors=True)
    pipe.set_progress_bar_config(disable=True)
    image = pipe(
        "a photo of the digit seven", num_inference_steps=2, generator=torch.Generator().manual_seed(0)
    ).images[0]
    assert image.size == (32, 32)


def test_tokenizer_written_by_the_project(tmp_path):
    tok = build_tokenizer(tmp_path)
    for word in [*DIGIT_WORDS, "photo", "digit", "sks"]:
        assert len(tok(word, add_special_tokens=False).input_ids) == 1
    # Any text tokenises (byte fallback), and new tokens can be added as Textual Inversion does.
    assert len(tok("a zebra-striped Ünïcode thing", add_special_tokens=False).input_ids) > 3
    assert tok.add_tokens(["<seven>"]) == 1 and len(tok("a photo of <seven>").input_ids) == 6


def test_renders_fill_the_frame_like_the_scans():
    rng = np.random.default_rng(0)
    for digit in range(10):
        ink = 255 - np.asarray(render_digit(rng, digit).convert("L"))
        rows = np.nonzero(ink.max(axis=1) > 64)[0]
        assert rows.max() - rows.min() >= 20  # tall: most of the 32-px frame, like the handwritten digits
