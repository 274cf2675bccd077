"""Checkpoints: a killed training run resumes and ends with the bytes of an uninterrupted one."""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from test_train import CFG, digest, stripes, train_once
from test_train_cost import REPO, scratch_mix

from diffaug.checkpoint import Checkpoints, checkpoint_key, rng_states, set_rng_states
from diffaug.classify.model import build_model
from diffaug.classify.train import fit, seed_everything
from diffaug.io import sha256_file

STEPS = CFG.model_copy(update=dict(steps=10, val_every=3, lr_schedule="cosine"))
EPOCHS = CFG.model_copy(update=dict(epochs=3))  # 40 images, batch 16: 3 steps an epoch, 9 in all


class Killed(Exception):
    pass


def train(cfg, every: int, kill_at_round: int = 0):
    """Train 40 images; with `kill_at_round`, die in that validation round, after a checkpoint."""
    rounds = []

    def log(m):
        rounds.append(m)
        if len(rounds) == kill_at_round:
            raise Killed

    ckpt = Checkpoints("test", "k", every)
    generator = seed_everything(cfg.seed)
    model = build_model(2, cfg.regime, False)
    result = fit(model, stripes(40, 0), stripes(32, 1), cfg, torch.device("cpu"), generator, log, ckpt)
    ckpt.clear()  # as the stage does once the model is saved
    return result, rounds


@pytest.mark.parametrize("cfg,every,kill", [(STEPS, 4, 3), (EPOCHS, 2, 3)])  # resumes mid-round at step 8
def test_a_killed_fit_resumes_from_its_checkpoint_to_the_same_bytes(cfg, every, kill, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DIFFAUG_CACHE", str(tmp_path))
    _, plain = train_once(cfg, n=40)
    with pytest.raises(Killed):
        train(cfg, every, kill_at_round=kill)
    result, rounds = train(cfg, every)
    assert "resumed at step 8 of" in capsys.readouterr().out
    assert digest(result.state_dict) == digest(plain.state_dict)
    assert (result.history, result.best_step, result.best_epoch) == (plain.history, plain.best_step, plain.best_epoch)
    assert rounds == plain.history  # the killed run's curves are logged again, then the rest


def test_checkpointing_does_not_change_the_trained_bytes(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFAUG_CACHE", str(tmp_path))
    for cfg in (STEPS, EPOCHS):
        _, plain = train_once(cfg, n=40)
        result, _ = train(cfg, every=1)
        assert digest(result.state_dict) == digest(plain.state_dict)


def test_save_and_load_round_trip_with_rng_states_as_tensors(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFAUG_CACHE", str(tmp_path))
    ckpt = Checkpoints("unit", "abc", every=5)
    assert ckpt.load() is None and ckpt.due(5, 10) and not ckpt.due(10, 10) and not ckpt.due(4, 10)
    g = torch.Generator().manual_seed(3)
    state = {"w": torch.arange(4.0), "rng": rng_states(g), "run": {"step": 5, "best": ((0.5, -1.0), {"a": 1})}}
    ckpt.save(state)
    expected = (torch.rand(3), torch.rand(3, generator=g))
    loaded = ckpt.load()  # weights_only=True: tensors and plain containers only
    set_rng_states(loaded["rng"], g)
    assert torch.equal(torch.rand(3), expected[0]) and torch.equal(torch.rand(3, generator=g), expected[1])
    assert torch.equal(loaded["w"], state["w"]) and loaded["run"] == state["run"]
    assert Checkpoints("unit", "abc", every=0).load() is None  # off: never resumes
    assert not list(ckpt.path.parent.glob(".*tmp*"))  # written via a temporary file, renamed


def test_the_key_follows_params_and_inputs_but_not_the_interval(tmp_path):
    f = tmp_path / "train.csv"
    f.write_text("a\n")
    key = checkpoint_key({"lr": 0.1, "checkpoint_every": 5}, [f])
    assert key == checkpoint_key({"lr": 0.1, "checkpoint_every": 50}, [f])
    assert key != checkpoint_key({"lr": 0.2, "checkpoint_every": 5}, [f])
    f.write_text("b\n")
    assert key != checkpoint_key({"lr": 0.1, "checkpoint_every": 5}, [f])


def start_train(folder, env) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "diffaug.stages.train"],
        cwd=folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(env, PYTHONPATH=str(REPO / "src")),
    )


@pytest.mark.slow  # three training processes of 200 steps: about a minute on 2 busy cores
def test_the_train_stage_killed_mid_run_resumes_to_the_same_model(tmp_path):
    env = dict(os.environ, DIFFAUG_CACHE=str(tmp_path / "cache"))
    train = dict(steps=200, val_every=40, checkpoint_every=50, threads=1)
    once, killed = tmp_path / "once", tmp_path / "killed"
    for folder in (once, killed):
        scratch_mix(folder, 6, **train)
    start = time.perf_counter()
    assert start_train(once, env).wait(300) == 0
    uninterrupted = time.perf_counter() - start
    saved = tmp_path / "cache/checkpoints/train"
    assert not list(saved.glob("*.pt"))  # cleared once the model was saved
    proc = start_train(killed, env)
    while not list(saved.glob("*.pt")) and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL and not (killed / "models/classifier").exists()
    start = time.perf_counter()
    rerun = start_train(killed, env)
    out, err = rerun.communicate(timeout=300)
    resumed = time.perf_counter() - start
    assert rerun.returncode == 0, err
    assert "train: resumed at step 50 of 200" in out
    model = "models/classifier/model.safetensors"
    assert sha256_file(killed / model) == sha256_file(once / model)
    assert not list(saved.glob("*.pt"))
    print(f"train: uninterrupted {uninterrupted:.1f} s, resumed rerun {resumed:.1f} s")


def test_a_run_keeps_only_its_newest_checkpoint_and_removes_other_keys_leftovers(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFAUG_CACHE", str(tmp_path))
    killed = Checkpoints("dreambooth/seven", "old", every=1)
    assert killed.load() is None
    killed.save({"step": 1})
    killed.save({"step": 2})
    assert sorted(f.name for f in killed.folder.iterdir()) == ["old.lock", "old.pt"]  # the newest only
    other_class = Checkpoints("dreambooth/one", "old", every=1)
    other_class.load()
    other_class.save({"step": 1})
    # The killed run is never cleared; a run of other params (a new key) removes what it left.
    rerun = Checkpoints("dreambooth/seven", "new", every=1)
    assert rerun.load() is None
    assert sorted(f.name for f in killed.folder.iterdir()) == ["new.lock"]
    assert other_class.path.exists()  # another class's run is left alone
    rerun.save({"step": 1})
    rerun.clear()  # finished: nothing of it remains
    assert not list(killed.folder.iterdir())


def test_a_run_going_on_in_another_process_keeps_its_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFAUG_CACHE", str(tmp_path))
    code = "c = Checkpoints('train', 'live', 1); c.load(); c.save({'step': 1}); print('saved', flush=True); input()"
    proc = subprocess.Popen(
        [sys.executable, "-c", f"from diffaug.checkpoint import Checkpoints; {code}"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(REPO / "src")),
    )
    assert proc.stdout.readline() == "saved\n"
    live = tmp_path / "checkpoints/train/live.pt"
    Checkpoints("train", "other", every=1).load()
    assert live.exists()  # its process holds the key's lock
    proc.kill()
    proc.wait()
    half_written = live.parent / f".live.pt.tmp-{proc.pid}-1"  # a save its kill interrupted
    half_written.write_bytes(b"")
    Checkpoints("train", "other", every=1).load()
    assert sorted(f.name for f in live.parent.iterdir()) == ["other.lock"]
