"""Shared fixtures: a tiny, untrained Stable Diffusion pipeline built in code (no download)."""

import pytest


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory):
    """A models/base folder: the built-in model's architecture with random weights."""
    from diffaug.diffusion.tiny.model import build_models, noise_schedule, save_pipeline
    from diffaug.io import write_json

    base = tmp_path_factory.mktemp("base")
    unet, vae, text_encoder, tokenizer = build_models(0, base / "tokenizer_src")
    save_pipeline(base / "pipeline", unet, vae, text_encoder, tokenizer, noise_schedule())
    write_json(base / "source.json", {"model": "builtin:tiny", "revision": None, "commit": None})
    return base


def pytest_collection_modifyitems(items):
    """Slow tests first: with two workers (pyproject's `-n 2`), the longest runs start at once and the
    short ones fill the other worker, instead of the end-to-end `dvc repro` starting last."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
