"""Generation library: seeds per image, batching, cache and resume, manifest, pipeline loading."""

import dataclasses
import errno
import hashlib
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

from diffaug.diffusion import jobs as jobs_module
from diffaug.diffusion.jobs import Settings, assemble, cache_key, cached_path, fill_cache, image_seed, plan
from diffaug.diffusion.loading import SCHEDULERS, load_pipeline, pick_dtype, read_source, set_scheduler
from diffaug.errors import DiffaugError
from diffaug.io import read_csv
from diffaug.legacy import old_generate

CPU = torch.device("cpu")
PROMPTS = {"three": ["a photo of the digit three"], "seven": ["a photo of the digit seven", "a drawing of seven"]}
SETTINGS = Settings(
    model="tiny@test",
    scheduler="dpm++",
    steps=3,
    guidance=4.0,
    negative_prompt="",
    height=None,
    width=None,
    save_size=16,
    dtype="float32",
)


@pytest.fixture(scope="module")
def pipe(tiny_base):
    return load_pipeline(read_source(tiny_base), CPU, torch.float32, "dpm++", base=tiny_base)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_plan_seeds_depend_on_class_and_index_only():
    jobs = plan(PROMPTS, 3, seed=0)
    assert [j.file for j in jobs] == [
        "three/00000.png",
        "three/00001.png",
        "three/00002.png",
        "seven/00000.png",
        "seven/00001.png",
        "seven/00002.png",
    ]
    assert [j.prompt for j in jobs[3:]] == [
        "a photo of the digit seven",
        "a drawing of seven",
        "a photo of the digit seven",
    ]
    assert jobs[4].seed == image_seed(0, "seven", 1) != image_seed(1, "seven", 1)
    # Asking for more images keeps the first ones as they were.
    assert plan(PROMPTS, 5, seed=0)[:3] == jobs[:3]


def test_cache_key_covers_everything_that_changes_pixels():
    job = plan(PROMPTS, 1, 0)[0]
    keys = {cache_key(job, SETTINGS)}
    for change in (
        dict(model="tiny@other"),
        dict(steps=4),
        dict(guidance=5.0),
        dict(scheduler="ddim"),
        dict(negative_prompt="blurry"),
        dict(save_size=32),
        dict(dtype="float16"),
        dict(height=64),
    ):
        keys.add(cache_key(job, dataclasses.replace(SETTINGS, **change)))
    keys.add(cache_key(dataclasses.replace(job, seed=job.seed + 1), SETTINGS))
    assert len(keys) == 10


def test_same_seed_same_bytes_and_resume(pipe, tmp_path):
    jobs = plan(PROMPTS, 3, seed=0)
    first = fill_cache(pipe, jobs, SETTINGS, batch_size=4, cache=tmp_path / "a")
    assert first == {"generated": 6, "reused": 0, "batch_size": 4}
    rows = assemble(jobs, SETTINGS, tmp_path / "out_a", {"model": "tiny", "revision": ""}, cache=tmp_path / "a")
    # An independent run gives identical bytes.
    fill_cache(pipe, jobs, SETTINGS, batch_size=4, cache=tmp_path / "b")
    assemble(jobs, SETTINGS, tmp_path / "out_b", {"model": "tiny", "revision": ""}, cache=tmp_path / "b")
    for job in jobs:
        assert digest(tmp_path / "out_a" / job.file) == digest(tmp_path / "out_b" / job.file)
    # An interrupted run: the second batch's images (batches are per class: seven's) are lost;
    # the rerun makes only those.
    for job in jobs[3:]:
        cached_path(cache_key(job, SETTINGS), tmp_path / "a").unlink()
    again = fill_cache(pipe, jobs, SETTINGS, batch_size=4, cache=tmp_path / "a")
    assert again == {"generated": 3, "reused": 3, "batch_size": 4}
    assemble(jobs, SETTINGS, tmp_path / "out_c", {"model": "tiny", "revision": ""}, cache=tmp_path / "a")
    for job in jobs:
        assert digest(tmp_path / "out_a" / job.file) == digest(tmp_path / "out_c" / job.file)
    # The manifest says how each image was made.
    manifest = read_csv(tmp_path / "out_a" / "manifest.csv")
    assert manifest == [{k: str(v) for k, v in r.items()} for r in rows]
    assert manifest[4]["prompt"] == "a drawing of seven" and int(manifest[4]["seed"]) == jobs[4].seed
    assert manifest[0]["scheduler"] == "dpm++" and manifest[0]["steps"] == "3" and manifest[0]["guidance"] == "4.0"


def test_processes_split_the_batches(pipe, tmp_path):
    jobs = plan(PROMPTS, 3, seed=0)
    a = fill_cache(pipe, jobs, SETTINGS, batch_size=2, process_index=0, num_processes=2, cache=tmp_path)
    b = fill_cache(pipe, jobs, SETTINGS, batch_size=2, process_index=1, num_processes=2, cache=tmp_path)
    assert a["generated"] == 4 and b["generated"] == 2
    assert all(cached_path(cache_key(j, SETTINGS), tmp_path).exists() for j in jobs)


def test_saved_at_the_dataset_size(pipe, tmp_path):
    from PIL import Image

    jobs = plan({"three": ["a photo of the digit three"]}, 1, seed=0)
    fill_cache(pipe, jobs, SETTINGS, batch_size=1, cache=tmp_path)
    with Image.open(cached_path(cache_key(jobs[0], SETTINGS), tmp_path)) as im:
        assert im.size == (16, 16) and im.mode == "RGB"


@pytest.mark.parametrize("name", sorted(SCHEDULERS))
def test_every_scheduler_runs(pipe, name, tmp_path):
    set_scheduler(pipe, name)
    try:
        image = pipe(
            "a photo of the digit three", num_inference_steps=6, generator=torch.Generator().manual_seed(0)
        ).images[0]
    finally:
        set_scheduler(pipe, "dpm++")
    assert image.size == (32, 32)


def test_dtype_by_device():
    assert pick_dtype(CPU) == torch.float32
    assert pick_dtype(torch.device("mps")) == torch.float16
    assert pick_dtype(CPU, "bfloat16") == torch.bfloat16


@pytest.mark.parametrize("save_size", [None, 16])
def test_overlapped_writing_gives_the_serial_bytes(pipe, tmp_path, save_size):
    settings = dataclasses.replace(SETTINGS, save_size=save_size)
    jobs = plan(PROMPTS, 5, seed=0)
    old_generate(pipe, jobs, settings, batch_size=2, cache=tmp_path / "serial")
    fill_cache(pipe, jobs, settings, batch_size=2, cache=tmp_path / "overlapped")
    for job in jobs:
        key = cache_key(job, settings)
        assert digest(cached_path(key, tmp_path / "serial")) == digest(cached_path(key, tmp_path / "overlapped"))


def test_writing_overlaps_the_next_batch_with_two_batches_at_most(pipe, tmp_path, monkeypatch):
    """Batch k is written while batch k+1 is drawn; batch k+2 is not drawn before batch k is written."""
    events, lock = [], threading.Lock()
    write = jobs_module.write_png
    calls = [0]

    def slow_write(path, image, save_size):
        with lock:
            events.append(("start", path.name))
        threading.Event().wait(0.2)  # far longer than starting the next draw takes
        write(path, image, save_size)
        with lock:
            events.append(("written", path.name))

    def counted(*a, **k):
        calls[0] += 1
        with lock:
            events.append(("drawn", calls[0]))
        return draw(*a, **k)

    draw = jobs_module.run_fitting
    monkeypatch.setattr(jobs_module, "write_png", slow_write)
    monkeypatch.setattr(jobs_module, "run_fitting", counted)
    jobs = plan({"three": ["a photo of the digit three"]}, 6, seed=0)
    fill_cache(pipe, jobs, SETTINGS, batch_size=2, cache=tmp_path)
    assert all(cached_path(cache_key(j, SETTINGS), tmp_path).exists() for j in jobs)
    names = [cached_path(cache_key(j, SETTINGS), tmp_path).name for j in jobs]
    first_batch_done = max(events.index(("written", n)) for n in names[:2])
    assert events.index(("drawn", 2)) < first_batch_done  # overlapped
    assert events.index(("drawn", 3)) > first_batch_done  # bounded: batch 1 finished before batch 3 is drawn


def test_a_failed_write_stops_generation(pipe, tmp_path, monkeypatch):
    def broken(path, image, save_size):
        raise OSError("disk full")

    monkeypatch.setattr(jobs_module, "write_png", broken)
    with pytest.raises(OSError, match="disk full"):
        fill_cache(pipe, plan(PROMPTS, 2, seed=0), SETTINGS, batch_size=2, cache=tmp_path)


def no_space(self, data):
    """Path.write_bytes on a full disk: the file is created, then nothing fits."""
    self.touch()
    raise OSError(errno.ENOSPC, "No space left on device", str(self))


def test_a_full_disk_names_the_cache_folder_and_leaves_no_temporary_files(pipe, tmp_path, monkeypatch):
    cache = tmp_path / "images"
    monkeypatch.setattr(Path, "write_bytes", no_space)
    with pytest.raises(DiffaugError) as e:
        fill_cache(pipe, plan(PROMPTS, 2, seed=0), SETTINGS, batch_size=2, cache=cache)
    msg = str(e.value)
    assert "no space left" in msg and str(cache) in msg and "DIFFAUG_CACHE" in msg
    assert len(msg.splitlines()) == 1
    assert [p for p in cache.rglob("*") if p.is_file()] == []  # no zero-byte .png.tmp-* left behind


def test_generation_removes_temporary_files_a_killed_run_left(pipe, tmp_path):
    cache = tmp_path / "images"
    (cache / "ab").mkdir(parents=True)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = cache / "ab" / f".{'ab' + '0' * 62}.png.tmp-{int(dead.stdout)}-1"
    live = cache / "ab" / f".{'ab' + '1' * 62}.png.tmp-{os.getppid()}-1"  # another run's, still writing
    stale.touch()
    live.touch()
    fill_cache(pipe, plan(PROMPTS, 1, seed=0), SETTINGS, batch_size=2, cache=cache)
    assert not stale.exists() and live.exists()
