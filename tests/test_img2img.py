"""img2img (SDEdit): parents from d_original, strength, lineage in the manifest, cost in denoising steps."""

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from diffaug.diffusion.img2img import FromParents, plan_img2img
from diffaug.diffusion.jobs import Settings, assemble, cache_key, class_batches, fill_cache
from diffaug.diffusion.loading import load_pipeline, read_source
from diffaug.io import read_csv
from helpers import pattern, write_split_folder

CPU = torch.device("cpu")
PROMPTS = {"three": ["a photo of the digit three"], "seven": ["a photo of the digit seven"]}
SETTINGS = Settings(
    model="tiny@test",
    scheduler="dpm++",
    steps=4,
    guidance=4.0,
    negative_prompt="",
    height=None,
    width=None,
    save_size=None,
    dtype="float32",
)


@pytest.fixture(scope="module")
def original(tmp_path_factory):
    root = tmp_path_factory.mktemp("original")
    write_split_folder(root, {"three": [pattern(i) for i in range(3)], "seven": [pattern(10 + i) for i in range(2)]})
    return root


@pytest.fixture(scope="module")
def pipe(tiny_base, original):
    base = load_pipeline(read_source(tiny_base), CPU, torch.float32, "dpm++", base=tiny_base)
    return FromParents.over(base, original, None)


def parents_of(root):
    parents = {}
    for r in read_csv(root / "manifest.csv"):
        parents.setdefault(r["class"], []).append((r["file"], r["sha256"]))
    return parents


def test_plan_cycles_parents_and_strengths(original):
    jobs = plan_img2img(PROMPTS, parents_of(original), {"three": 6, "seven": 4}, [0.25, 0.75], seed=0)
    three = [j for j in jobs if j.label == "three"]
    assert [j.parent for j in three] == ["three/000.png", "three/001.png", "three/002.png"] * 2
    # Each parent gets both strengths over its two children, and the batches hold one strength each.
    assert {(j.parent, j.strength) for j in three} == {(f"three/00{i}.png", s) for i in range(3) for s in (0.25, 0.75)}
    assert all(len({j.strength for j in b}) == 1 for b in class_batches(jobs, 8))
    # Parent and strength are part of the cache key.
    job = three[0]
    assert (
        len(
            {
                cache_key(job, SETTINGS),
                cache_key(dataclasses.replace(job, strength=0.5), SETTINGS),
                cache_key(dataclasses.replace(job, parent_sha256="0" * 64), SETTINGS),
            }
        )
        == 3
    )


def test_every_image_has_a_d_original_parent_and_its_strength(pipe, original, tmp_path):
    jobs = plan_img2img(PROMPTS, parents_of(original), {"three": 4, "seven": 3}, [0.5, 1.0], seed=0)
    assert fill_cache(pipe, jobs, SETTINGS, batch_size=4, cache=tmp_path / "cache")["generated"] == 7
    assemble(jobs, SETTINGS, tmp_path / "out", {"model": "tiny", "revision": ""}, cache=tmp_path / "cache")
    rows = read_csv(tmp_path / "out" / "manifest.csv")
    real = {r["file"]: r["sha256"] for r in read_csv(original / "manifest.csv")}
    assert len(rows) == 7
    for r in rows:
        assert r["parent"] in real and r["parent_sha256"] == real[r["parent"]]
        assert r["parent"].split("/")[0] == r["class"] and float(r["strength"]) in (0.5, 1.0)
        assert (tmp_path / "out" / r["file"]).is_file()


def _round_trip(pipe, image: Image.Image) -> np.ndarray:
    """The parent through the VAE and back, written out here with plain torch."""
    x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 127.5 - 1.0).permute(2, 0, 1)[None]
    with torch.no_grad():
        y = pipe.vae.decode(pipe.vae.encode(x).latent_dist.mode()).sample
    return ((y[0].permute(1, 2, 0).clamp(-1, 1) + 1) * 127.5).round().numpy()


def test_strength_zero_returns_the_parent_up_to_the_vae(pipe, original, tmp_path):
    jobs = plan_img2img(PROMPTS, parents_of(original), {"three": 1, "seven": 1}, [0.0], seed=0)
    calls = []
    hook = pipe.unet.register_forward_hook(lambda *a: calls.append(1))
    try:
        images = pipe(
            prompt=[j.prompt for j in jobs],
            image=pipe.start_images(jobs),
            strength=0.0,
            num_inference_steps=4,
            output_type="pil",
        ).images
    finally:
        hook.remove()
    assert not calls  # no denoising step at all
    for job, image in zip(jobs, images):
        with Image.open(original / job.parent) as parent:
            expected = _round_trip(pipe, parent.convert("RGB"))
        assert np.abs(np.asarray(image, dtype=np.float32) - expected).max() <= 1.0


@pytest.mark.parametrize("strength, steps", [(0.5, 4), (1.0, 4), (0.25, 8)])
def test_strength_s_runs_s_times_steps_denoising_steps(pipe, original, strength, steps):
    """The cost claim of params.yaml: img2img at strength s runs int(s x steps) UNet steps (one batched
    call each: classifier-free guidance doubles the batch, not the calls)."""
    jobs = plan_img2img(PROMPTS, parents_of(original), {"three": 2, "seven": 0}, [strength], seed=0)
    calls = []
    hook = pipe.unet.register_forward_hook(lambda *a: calls.append(1))
    try:
        pipe(
            prompt=[j.prompt for j in jobs],
            image=pipe.start_images(jobs),
            strength=strength,
            num_inference_steps=steps,
            guidance_scale=4.0,
            generator=[torch.Generator().manual_seed(j.seed) for j in jobs],
        )
    finally:
        hook.remove()
    assert len(calls) == int(strength * steps)
