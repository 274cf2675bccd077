"""The classifier: regimes, weights offline, best-validation copy, determinism, evaluation."""

import hashlib

import numpy as np
import pytest
import torch
from torchvision.models import resnet18

from helpers import section
from diffaug.classify.data import Augment
from diffaug.classify.evaluate import score
from diffaug.classify.model import build_model, imagenet_weights_path, use_small_stem
from diffaug.classify.train import fit, predict, seed_everything
from diffaug.device import autocast_dtype, pick_device
from diffaug.errors import DiffaugError

CPU = torch.device("cpu")
CFG = section("train", epochs=3, batch_size=16, lr=0.05, image_size=16, small_stem="false", augment="standard")


def stripes(n: int, seed: int):
    """Class 0: horizontal stripes, class 1: vertical stripes, both noisy; uint8 (N,3,16,16)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    base = (torch.arange(16) % 4 < 2).float()
    h = base.view(1, 16, 1).expand(3, 16, 16)
    x = torch.stack([h if c == 0 else h.transpose(1, 2) for c in y.tolist()])
    x = (x * 180 + torch.rand(x.shape, generator=g) * 75).to(torch.uint8)
    return x, y


def train_once(cfg=CFG, model=None, n=64):
    generator = seed_everything(cfg.seed)
    model = model or build_model(2, cfg.regime, use_small_stem(cfg.small_stem, cfg.image_size))
    return model, fit(model, stripes(n, 0), stripes(32, 1), cfg, CPU, generator)


def digest(state: dict) -> str:
    return hashlib.sha256(b"".join(v.numpy().tobytes() for _, v in sorted(state.items()))).hexdigest()


def test_learns_and_keeps_the_best_validation_epoch():
    model, result = train_once(CFG.model_copy(update=dict(epochs=4)), n=128)
    accs = [h["val_accuracy"] for h in result.history]
    assert result.best_val_accuracy == max(accs) >= 0.9
    assert result.history[result.best_epoch - 1]["val_accuracy"] == max(accs)
    # The kept weights are a real copy of that epoch: they score exactly what was recorded.
    model.load_state_dict(result.state_dict)
    x, y = stripes(32, 1)
    assert (predict(model, x, CPU, 8).argmax(1) == y).double().mean().item() == pytest.approx(result.best_val_accuracy)


def test_same_seed_same_bytes_other_seed_other_bytes():
    cfg = CFG.model_copy(update=dict(epochs=1))
    a = digest(train_once(cfg)[1].state_dict)
    assert a == digest(train_once(cfg)[1].state_dict)
    assert a != digest(train_once(cfg.model_copy(update=dict(seed=1)))[1].state_dict)


def test_small_stem_for_small_images():
    assert use_small_stem("auto", 32) and not use_small_stem("auto", 224) and not use_small_stem("false", 32)
    model = build_model(10, "scratch", small_stem=True)
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert isinstance(model.maxpool, torch.nn.Identity) and model.fc.out_features == 10


def test_finetune_offline_without_weights_says_which_file_and_where(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", lambda *a, **k: (_ for _ in ()).throw(OSError("offline")))
    with pytest.raises(DiffaugError) as info:
        build_model(10, "finetune", small_stem=False)
    message = str(info.value)
    assert "resnet18-f37072fd.pth" in message and str(tmp_path / "hub" / "checkpoints") in message
    assert "train.regime=scratch" in message


def place_weights(tmp_path, monkeypatch) -> dict:
    """A ResNet-18 state dict where torchvision's weights API looks for it, as a user would place it."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    torch.manual_seed(123)
    state = resnet18().state_dict()
    imagenet_weights_path().parent.mkdir(parents=True)
    torch.save(state, imagenet_weights_path())
    return state


def test_finetune_loads_placed_weights(tmp_path, monkeypatch):
    state = place_weights(tmp_path, monkeypatch)
    model = build_model(10, "finetune", small_stem=False)
    assert torch.equal(model.layer4[1].conv2.weight, state["layer4.1.conv2.weight"])
    assert model.fc.out_features == 10


def test_frozen_regime_trains_only_the_head(tmp_path, monkeypatch):
    state = place_weights(tmp_path, monkeypatch)
    cfg = CFG.model_copy(update=dict(regime="frozen", epochs=2))
    model, result = train_once(cfg, build_model(2, "frozen", small_stem=False))
    changed = {k for k, v in result.state_dict.items() if not k.startswith("fc.") and not torch.equal(v, state[k])}
    assert changed == set()  # weights and batch-norm statistics stay ImageNet's
    assert not torch.equal(result.state_dict["fc.weight"], model.fc.weight.new_zeros(1)) and any(
        p.requires_grad for p in model.fc.parameters())


def test_augment_is_seeded_and_keeps_shape():
    x = stripes(8, 0)[0]
    a = Augment("standard", True, torch.Generator().manual_seed(0))(x)
    b = Augment("standard", True, torch.Generator().manual_seed(0))(x)
    assert a.shape == x.shape and a.dtype == torch.uint8 and torch.equal(a, b) and not torch.equal(a, x)
    torch.manual_seed(0)
    r = Augment("randaugment", False, torch.Generator().manual_seed(0))(x)
    assert r.shape == x.shape and r.dtype == torch.uint8


def test_device_selection_on_this_machine():
    assert pick_device("cpu") == CPU and autocast_dtype(CPU) is None
    if not torch.cuda.is_available():
        assert pick_device("auto").type in ("cpu", "mps")
        with pytest.raises(DiffaugError, match="CUDA is not available"):
            pick_device("cuda:0")


def test_score():
    y_true = np.array([0, 0, 1, 1, 2, 2])
    y_pred = np.array([0, 1, 1, 1, 2, 0])
    metrics, confusion, bars = score(y_true, y_pred, ["a", "b", "c"])
    assert metrics["accuracy"] == pytest.approx(4 / 6, abs=1e-6)
    assert metrics["per_class_accuracy"] == {"a": 0.5, "b": 1.0, "c": 0.5}
    assert {"actual": "c", "predicted": "a"} in confusion and len(confusion) == 6
    assert bars[1] == {"class": "b", "accuracy": 1.0}


def test_score_agrees_with_sklearn():
    from sklearn.metrics import confusion_matrix, f1_score

    rng = np.random.default_rng(0)
    y_true, y_pred = rng.integers(0, 4, 200), rng.integers(0, 5, 200)  # class 4: predicted, never present
    y_pred[y_pred == 3] = 2  # class 3: present, never predicted
    classes = list("abcde")
    metrics, _, _ = score(y_true, y_pred, classes)
    labels = list(range(len(classes)))
    assert metrics["macro_f1"] == pytest.approx(
        f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0), abs=1e-6)
    cm = confusion_matrix(y_true, y_pred, labels=labels)
    expected = {c: round(float(cm[i, i] / cm[i].sum()), 6) if cm[i].sum() else None for i, c in enumerate(classes)}
    assert metrics["per_class_accuracy"] == expected
