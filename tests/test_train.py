"""The classifier: regimes, weights offline, best-validation copy, determinism, evaluation."""

import hashlib

import numpy as np
import pytest
import torch
from torchvision.models import resnet18

from diffaug.classify.data import Augment
from diffaug.classify.evaluate import score
from diffaug.classify.model import build_model, imagenet_weights_path, use_small_stem
from diffaug.classify.train import budget, epoch_batches, fit, predict, seed_everything, step_batches
from diffaug.device import autocast_dtype, pick_device
from diffaug.errors import DiffaugError
from diffaug.legacy import OldAugment, old_fit_epochs
from helpers import section

CPU = torch.device("cpu")
CFG = section(
    "train", steps=None, epochs=3, batch_size=16, lr=0.05, image_size=16, small_stem="false", augment="standard"
)


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
    monkeypatch.setattr(
        torch.hub, "load_state_dict_from_url", lambda *a, **k: (_ for _ in ()).throw(OSError("offline"))
    )
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
        p.requires_grad for p in model.fc.parameters()
    )


def test_augment_is_seeded_and_keeps_shape():
    x = stripes(8, 0)[0]
    a = Augment("standard", True, torch.Generator().manual_seed(0))(x)
    b = Augment("standard", True, torch.Generator().manual_seed(0))(x)
    assert a.shape == x.shape and a.dtype == torch.uint8 and torch.equal(a, b) and not torch.equal(a, x)
    torch.manual_seed(0)
    r = Augment("randaugment", False, torch.Generator().manual_seed(0))(x)
    assert r.shape == x.shape and r.dtype == torch.uint8


@pytest.mark.parametrize("size,hflip", [(16, True), (32, False), (224, True), (5, True)])
def test_batched_crop_and_flip_give_the_old_pixels(size, hflip):
    x = torch.randint(0, 256, (24, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(size))
    old = OldAugment("standard", hflip, torch.Generator().manual_seed(7))(x)
    new = Augment("standard", hflip, torch.Generator().manual_seed(7))(x)
    assert torch.equal(old, new)


def crop_offsets(augment, n=3000, size=32):
    """(dy, dx) of each crop, read back from images whose pixels hold their own row and column."""
    r = torch.arange(size, dtype=torch.uint8)
    x = (
        torch.stack(
            [
                r.view(size, 1).expand(size, size),
                r.view(1, size).expand(size, size),
                torch.zeros(size, size, dtype=torch.uint8),
            ]
        )
        .expand(n, 3, size, size)
        .contiguous()
    )
    out = augment(x)
    pad = size // 8
    return out[:, 0, pad, 0].long(), out[:, 1, 0, pad].long()  # row and column `pad` show the offset


def test_crop_offset_histograms_of_old_and_new_agree():
    pad, bins = 4, 9
    old = crop_offsets(OldAugment("standard", False, torch.Generator().manual_seed(1)))
    new = crop_offsets(Augment("standard", False, torch.Generator().manual_seed(1)))
    other_seed = crop_offsets(Augment("standard", False, torch.Generator().manual_seed(2)))
    for a, b, c in zip(old, new, other_seed):
        ha, hb, hc = (torch.bincount(v, minlength=bins) for v in (a, b, c))
        assert len(hb) == 2 * pad + 1 and torch.equal(ha, hb)
        # Uniform over the 9 offsets: each bin within 5 standard deviations of n/9, for any seed.
        for h in (hb, hc):
            expected = 3000 / bins
            assert (h.double() - expected).abs().max() < 5 * (expected * (1 - 1 / bins)) ** 0.5


def test_randaugment_draws_once_per_group():
    x = torch.randint(0, 256, (1, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    x = x.expand(64, 3, 16, 16).contiguous()
    torch.manual_seed(0)
    out = Augment("randaugment", False, torch.Generator()).grouped_randaugment(x)
    groups = out.split(16)
    assert out.shape == x.shape and out.dtype == torch.uint8
    assert all(torch.equal(g[0], g[i]) for g in groups for i in range(16))  # one op pair per group
    assert len({g[0].numpy().tobytes() for g in groups}) > 1  # groups differ


def test_new_data_path_trains_the_old_model_byte_for_byte():
    """Batched crop and device-side sums leave the CPU model as it was (standard augmentation)."""
    cfg = CFG.model_copy(update=dict(epochs=2))
    train, none = stripes(48, 0), (torch.zeros(0, 3, 16, 16, dtype=torch.uint8), torch.zeros(0, dtype=torch.int64))
    generator = seed_everything(cfg.seed)
    model = build_model(2, cfg.regime, False)
    old_fit_epochs(model, train, cfg, CPU, generator)
    generator = seed_everything(cfg.seed)
    new = fit(build_model(2, cfg.regime, False), train, none, cfg, CPU, generator)
    assert digest(new.state_dict) == digest({k: v.detach() for k, v in model.state_dict().items()})


def test_compile_wraps_the_training_steps_and_saves_plain_weights(monkeypatch):
    compiled = []
    monkeypatch.setattr(torch, "compile", lambda m, **kw: compiled.append(m) or m)
    model, result = train_once(CFG.model_copy(update=dict(epochs=1, compile=True)))
    assert compiled == [model]
    assert not any(k.startswith("_orig_mod") for k in result.state_dict)


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
        f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0), abs=1e-6
    )
    cm = confusion_matrix(y_true, y_pred, labels=labels)
    expected = {c: round(float(cm[i, i] / cm[i].sum()), 6) if cm[i].sum() else None for i, c in enumerate(classes)}
    assert metrics["per_class_accuracy"] == expected


@pytest.mark.parametrize("n", [3, 20, 48, 200])
def test_a_step_budget_is_the_same_for_every_training_set_size(n):
    """Every batch is full and there are `steps` of them, however many images there are; every image
    is drawn as often as any other, to within one, so no image is left out of the budget."""
    cfg = CFG.model_copy(update=dict(steps=25, val_every=10, batch_size=16))
    batches = list(step_batches(n, cfg, torch.Generator().manual_seed(0)))
    assert len(batches) == 25 and all(len(b.idx) == 16 for b in batches)
    assert [i for i, b in enumerate(batches, 1) if b.ends_round] == [10, 20, 25]
    counts = torch.bincount(torch.cat([b.idx for b in batches]), minlength=n)
    assert counts.max() - counts.min() <= 1 + (16 * 25 % n > 0) and counts.sum() == 400
    assert budget(n, cfg) == {"budget": "steps", "steps": 25, "images_seen": 400}


def test_an_epoch_budget_shrinks_with_the_training_set():
    cfg = CFG.model_copy(update=dict(epochs=3, batch_size=16))
    assert budget(48, cfg) == {"budget": "epochs", "steps": 9, "images_seen": 144}
    assert budget(12, cfg) == {"budget": "epochs", "steps": 3, "images_seen": 36}
    batches = list(epoch_batches(17, cfg, torch.Generator().manual_seed(0)))  # 16 + a batch of one, dropped
    assert [len(b.idx) for b in batches] == [16] * 3 and budget(17, cfg)["steps"] == 3


def test_training_for_steps_validates_every_val_every_and_keeps_the_best():
    cfg = CFG.model_copy(update=dict(steps=12, val_every=4))
    model, result = train_once(cfg, n=24)
    assert [h["step"] for h in result.history] == [4, 8, 12]
    best = max(result.history, key=lambda h: (h["val_accuracy"], -h["val_loss"]))
    assert result.best_step == best["step"] and result.best_val_accuracy == best["val_accuracy"]
    assert digest(train_once(cfg, n=24)[1].state_dict) == digest(result.state_dict)
