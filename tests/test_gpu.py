"""GPU code paths checked without a GPU: out-of-memory fallback, device and dtype choice, speed settings."""

from __future__ import annotations

from types import SimpleNamespace
from unittest import mock

import numpy as np
import pytest
import torch
from PIL import Image

from diffaug import device as device_module
from diffaug.classify.data import Loader, fits_on_device, to_device
from diffaug.device import autocast_dtype, pick_device
from diffaug.diffusion.jobs import Settings, cache_key, cached_path, fill_cache, plan
from diffaug.diffusion.loading import pick_dtype, speed_up
from diffaug.errors import DiffaugError

CUDA = torch.device("cuda")
SETTINGS = Settings(
    model="fake",
    scheduler="dpm++",
    steps=1,
    guidance=1.0,
    negative_prompt="",
    height=64,
    width=64,
    save_size=None,
    dtype="float16",
)
PROMPTS = {"cat": ["a photo of a cat"], "dog": ["a photo of a dog"]}


class FakePipe:
    """Draws each image from its own generator (as SD does), and runs out of memory above `fits` images."""

    def __init__(self, fits: int):
        self.fits, self.calls = fits, []

    def __call__(self, prompt, generator, **kw):
        self.calls.append(len(prompt))
        if len(prompt) > self.fits:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        # output_type="pt": (N,3,H,W) floats in [0, 1]
        return SimpleNamespace(images=torch.stack([torch.rand(3, 8, 8, generator=g) for g in generator]))


def pixels(jobs, cache):
    return [np.asarray(Image.open(cached_path(cache_key(j, SETTINGS), cache))) for j in jobs]


def test_out_of_memory_halves_the_batch_and_keeps_the_images(tmp_path):
    jobs = plan(PROMPTS, 10, seed=0)
    roomy = fill_cache(FakePipe(fits=100), jobs, SETTINGS, batch_size=8, cache=tmp_path / "a")
    pipe = FakePipe(fits=3)
    with mock.patch("torch.cuda.empty_cache") as empty:
        tight = fill_cache(pipe, jobs, SETTINGS, batch_size=8, cache=tmp_path / "b")
    assert roomy == {"generated": 20, "reused": 0, "batch_size": 8}
    assert tight == {"generated": 20, "reused": 0, "batch_size": 2}
    # 8 fails, 4 fails, 2 fits; later batches start at 2 instead of failing again.
    assert pipe.calls[:4] == [8, 4, 2, 2] and max(pipe.calls[4:]) == 2
    assert sum(c for c in pipe.calls if c <= 3) == 20
    assert empty.call_count == 0 or torch.cuda.is_available()  # no CUDA here: nothing to empty
    for a, b in zip(pixels(jobs, tmp_path / "a"), pixels(jobs, tmp_path / "b")):
        assert (a == b).all()  # seeds are per image: the slicing does not change an image


def test_out_of_memory_at_batch_one_is_one_sentence(tmp_path):
    with pytest.raises(DiffaugError) as e:
        fill_cache(FakePipe(fits=0), plan(PROMPTS, 2, seed=0), SETTINGS, batch_size=2, cache=tmp_path)
    message = str(e.value)
    assert "out of GPU memory even one image at a time" in message and "generate.cpu_offload" in message
    assert "\n" not in message


def test_dtype_by_device(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert pick_dtype(CUDA) == torch.bfloat16 and autocast_dtype(CUDA) == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)  # e.g. a V100 or T4
    assert pick_dtype(CUDA) == torch.float16 and autocast_dtype(CUDA) == torch.float16
    assert pick_dtype(torch.device("mps")) == torch.float16
    assert pick_dtype(torch.device("cpu")) == torch.float32 and autocast_dtype(torch.device("cpu")) is None
    assert pick_dtype(CUDA, "float32") == torch.float32


def test_device_choice(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert pick_device("auto") == CUDA
    assert pick_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(DiffaugError, match="does not exist"):
        pick_device("cuda:2")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(device_module.torch.backends.mps, "is_available", lambda: False)
    assert pick_device("auto") == torch.device("cpu")
    with pytest.raises(DiffaugError, match="CUDA is not available"):
        pick_device("cuda")


def fake_sd():
    pipe = mock.MagicMock()
    pipe.unet.to.return_value = pipe.unet
    return pipe


def test_speed_up_on_cuda(monkeypatch):
    compiled = []
    monkeypatch.setattr(torch, "compile", lambda m, **kw: compiled.append(kw) or m)
    pipe = speed_up(fake_sd(), CUDA, batch_size=32, compile_unet=True, resolution=1024)
    pipe.to.assert_called_once_with(CUDA)
    pipe.vae.enable_slicing.assert_called_once()
    pipe.vae.enable_tiling.assert_called_once()
    pipe.unet.to.assert_called_with(memory_format=torch.channels_last)
    assert compiled == [{"mode": "reduce-overhead", "fullgraph": True}]
    assert type(pipe.unet.set_attn_processor.call_args[0][0]).__name__ == "AttnProcessor2_0"  # SDPA

    small = speed_up(fake_sd(), CUDA, batch_size=4, resolution=512, cpu_offload=True)
    small.enable_model_cpu_offload.assert_called_once_with(device=CUDA)
    small.to.assert_not_called()
    small.vae.enable_slicing.assert_not_called()
    small.vae.enable_tiling.assert_not_called()


def test_speed_up_on_cpu_only_moves():
    pipe = speed_up(fake_sd(), torch.device("cpu"), batch_size=64, compile_unet=True, cpu_offload=True, resolution=1024)
    pipe.to.assert_called_once()
    pipe.vae.enable_slicing.assert_not_called()
    pipe.vae.enable_tiling.assert_not_called()
    pipe.enable_model_cpu_offload.assert_not_called()


def test_small_tensors_reach_the_gpu_without_a_host_sync():
    x = torch.arange(6)
    assert torch.equal(to_device(x, torch.device("cpu")), x)
    fake = mock.MagicMock()  # stands for a CPU tensor: pinning needs a CUDA driver
    fake.pin_memory.return_value = fake
    to_device(fake, CUDA)
    fake.pin_memory.assert_called_once()
    fake.to.assert_called_once_with(CUDA, non_blocking=True)


def test_dataset_on_the_gpu_only_when_it_fits(monkeypatch):
    gib = 2**30
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (80 * gib, 80 * gib))
    assert fits_on_device(int(0.9 * gib), CUDA)  # 7,000 images at 224 px on an 80 GB card
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (2 * gib, 16 * gib))
    assert not fits_on_device(int(0.9 * gib), CUDA)  # a busy or small card: the pinned host buffer
    assert fits_on_device(10 * gib, torch.device("cpu"))


def test_host_buffer_is_pinned_once_and_reused(monkeypatch):
    """Off the device, batches go through one page-locked buffer allocated once, copied asynchronously,
    and the next batch waits for the previous copy (not for the GPU's work) before reusing it."""
    images, labels = torch.arange(10 * 3 * 2 * 2, dtype=torch.uint8).view(10, 3, 2, 2), torch.arange(10)
    empty, pinned = torch.empty, []
    monkeypatch.setattr(torch, "empty", lambda *a, pin_memory=False, **k: pinned.append(pin_memory) or empty(*a, **k))
    events = []

    class Event:
        def record(self):
            events.append("record")

        def synchronize(self):
            events.append("wait")

    monkeypatch.setattr(torch.cuda, "Event", Event)
    copies = []
    monkeypatch.setattr(torch.Tensor, "to", lambda t, *a, **k: copies.append(k) or t.clone())
    loader = Loader(images, labels, CUDA, batch_size=4, resident=False)
    for idx in (torch.tensor([3, 1, 7, 0]), torch.tensor([9, 2])):
        x, y = loader(idx)
        assert torch.equal(x, images[idx]) and torch.equal(y, labels[idx])
    assert pinned == [True, True]  # images and labels, once
    assert loader.buffer.shape == (4, 3, 2, 2)
    assert events == ["record", "wait", "record"]
    assert all(k == {"non_blocking": True} for k in copies)


def test_resident_dataset_is_copied_once():
    images, labels = torch.randint(0, 255, (6, 3, 4, 4), dtype=torch.uint8), torch.arange(6)
    loader = Loader(images, labels, torch.device("cpu"), batch_size=4, resident=True)
    x, y = loader(torch.tensor([5, 0]))
    assert torch.equal(x, images[[5, 0]]) and torch.equal(y, labels[[5, 0]])
    buffered = Loader(images, labels, torch.device("cpu"), batch_size=4, resident=False)
    a, _ = buffered(torch.tensor([1, 2]))
    buffered(torch.tensor([3, 4]))
    assert torch.equal(a, images[[1, 2]])  # a batch handed out is not overwritten by the next


KEYS = [
    "generate_images_per_second",
    "dreambooth_steps_per_second",
    "textual_inversion_steps_per_second",
    "classifier_images_per_second",
]


@pytest.mark.slow
def test_gpu_benchmark_smoke_writes_every_key(tmp_path):
    """`benchmarks/gpu.py --smoke` is the GPU benchmark at tiny sizes: on this CPU it must run every
    measurement through the real code paths and write each key with its settings."""
    import json
    import os
    import subprocess
    import sys

    from helpers import REPO

    out = tmp_path / "gpu.json"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.run(
        [sys.executable, "benchmarks/gpu.py", "--smoke", "--device", "cpu", "--out", str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads(out.read_text())
    assert results["smoke"] is True and results["device"] == "cpu"
    for key in KEYS:
        rows = results[key]
        assert rows and key in proc.stdout  # the printed table too
        for row in rows:
            assert "error" not in row, row
            assert "skipped" in row or (row.get("images_per_second") or row.get("steps_per_second") or 0) > 0
    dreambooth = {(r["mode"], r["gradient_checkpointing"]) for r in results["dreambooth_steps_per_second"]}
    assert dreambooth == {("full", False), ("full", True), ("lora", False), ("lora", True)}
    paths = {(r["data_path"], r["augment"]) for r in results["classifier_images_per_second"]}
    assert paths == {(p, a) for p in ("old", "new") for a in ("standard", "randaugment")}
    assert any(r.get("largest_that_fits") for r in results["generate_images_per_second"])
