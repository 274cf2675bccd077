"""DreamBooth and Textual Inversion stages killed mid-run resume from their last checkpoint and end with
the bytes of an uninterrupted run; the checkpoint folder keeps nothing once a run is done."""

import importlib
import sys

import pytest

import diffaug.diffusion.tuning
from diffaug.io import read_json, sha256_tree
from helpers import params_file, pattern

CLASS = "seven"
TIMINGS = ("seconds", "steps_per_second")
RUNS = {  # a few steps each; DreamBooth with prior images and gradient accumulation, TI with two vectors
    "dreambooth": dict(
        steps=4, batch_size=2, gradient_accumulation=2, class_images=2, prior_steps=2, instance_images=3
    ),
    "textual_inversion": dict(steps=4, batch_size=2, num_vectors=2, images=3),
}


class Killed(Exception):
    pass


def workspace(root, tiny_base, method: str, **params):
    (root / "models").mkdir(parents=True)
    (root / "models/base").symlink_to(tiny_base)
    (root / "data/original" / CLASS).mkdir(parents=True)
    for i in range(4):
        pattern(i).save(root / "data/original" / CLASS / f"{i:02d}.png")
    params_file(root, classes=[CLASS, "one"], **{method: {**RUNS[method], **params}})
    return root


def run_stage(root, method: str, kill_after: int = 0) -> None:
    """The stage's main in `root`; with `kill_after`, it dies right after that optimizer step."""
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.setattr(sys, "argv", ["stage", CLASS])
        if kill_after:
            show, steps = diffaug.diffusion.tuning.show_step, []

            def show_then_die(progress, losses):
                show(progress, losses)
                steps.append(1)
                if len(steps) == kill_after:
                    raise Killed

            mp.setattr(diffaug.diffusion.tuning, "show_step", show_then_die)
        importlib.import_module(f"diffaug.stages.train_{method}").main()


def result(root, method: str) -> tuple[str, dict]:
    metrics = read_json(root / "metrics" / method / f"{CLASS}.json")
    return sha256_tree(root / "models" / method / CLASS), {k: v for k, v in metrics.items() if k not in TIMINGS}


@pytest.mark.parametrize("method", [pytest.param("dreambooth", marks=pytest.mark.slow), "textual_inversion"])
def test_a_killed_fine_tuning_resumes_to_the_bytes_of_an_uninterrupted_run(
    method, tiny_base, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("DIFFAUG_CACHE", str(tmp_path / "cache"))
    saved = tmp_path / "cache/checkpoints" / method / CLASS
    once = workspace(tmp_path / "once", tiny_base, method, checkpoint_every=0)
    run_stage(once, method)
    killed = workspace(tmp_path / "killed", tiny_base, method, checkpoint_every=1)
    with pytest.raises(Killed):
        run_stage(killed, method, kill_after=3)  # checkpoints after steps 1 and 2
    assert len(list(saved.glob("*.pt"))) == 1  # the newest only
    assert not (killed / "models" / method / CLASS).exists()
    capsys.readouterr()
    run_stage(killed, method)
    assert "resumed at step 2 of 4 from a checkpoint" in capsys.readouterr().out
    assert result(killed, method) == result(once, method)
    assert not list(saved.iterdir())  # the finished run removed its checkpoint


def test_a_checkpoint_of_other_params_is_not_resumed_but_removed(tiny_base, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DIFFAUG_CACHE", str(tmp_path / "cache"))
    saved = tmp_path / "cache/checkpoints/textual_inversion" / CLASS
    root = workspace(tmp_path / "ws", tiny_base, "textual_inversion", checkpoint_every=1)
    with pytest.raises(Killed):
        run_stage(root, "textual_inversion", kill_after=3)
    stale = list(saved.glob("*.pt"))
    assert len(stale) == 1
    params_file(root, classes=[CLASS, "one"], textual_inversion={**RUNS["textual_inversion"], "lr": 1.0e-3})
    capsys.readouterr()
    run_stage(root, "textual_inversion")
    assert "resumed" not in capsys.readouterr().out
    assert not stale[0].exists() and not list(saved.iterdir())
