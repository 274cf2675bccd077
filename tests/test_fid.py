"""FID and KID: known cases, the feature extractors offline, and the two stages on tiny data."""

import json
import sys
import warnings

import numpy as np
import pytest
import torch

from diffaug.errors import DiffaugError
from diffaug.io import read_csv, write_csv
from diffaug.metrics.fid import fid, frechet_distance, kid
from helpers import params_file, pattern, save_random_reference, write_split_folder

CLASSES = ["zero", "one"]


def gaussian(n, d, seed, shift=0.0):
    return np.random.default_rng(seed).normal(size=(n, d)) + shift


def test_fid_of_a_set_with_itself_is_zero_and_a_shift_gives_its_square():
    a = gaussian(300, 8, 0)
    assert fid(a, a) == pytest.approx(0.0, abs=1e-6)
    shift = np.array([1.0, -2.0, 0, 0, 0, 0, 0, 0.5])
    assert fid(a, a + shift) == pytest.approx(float(shift @ shift), rel=1e-6)  # same covariance


def test_frechet_distance_closed_form_for_diagonal_gaussians():
    # ||mu1 - mu2||² + sum (sqrt(s1) - sqrt(s2))²  for diagonal covariances
    value = frechet_distance(np.zeros(2), np.diag([1.0, 4.0]), np.array([3.0, 0.0]), np.diag([4.0, 1.0]))
    assert value == pytest.approx(9 + 1 + 1, rel=1e-6)


@pytest.mark.parametrize("n", [200, 10])  # full-rank and singular (fewer images than dimensions)
def test_frechet_distance_agrees_with_pytorch_fid(n):
    from pytorch_fid.fid_score import calculate_frechet_distance

    from diffaug.metrics.fid import statistics

    a, b = statistics(gaussian(n, 32, 0)), statistics(gaussian(n, 32, 1, shift=0.3) * 1.5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy's notes on sqrtm of singular matrices
        expected = calculate_frechet_distance(*a, *b)
    assert frechet_distance(*a, *b) == pytest.approx(expected, rel=1e-6)


def test_kid_is_unbiased_near_zero_for_one_distribution_and_grows_with_a_shift():
    a, b = gaussian(400, 16, 0), gaussian(400, 16, 1)
    same, same_std = kid(a, b, subsets=50, subset_size=100, seed=0)
    assert abs(same) < 3 * same_std + 1e-3
    small, _ = kid(a, gaussian(400, 16, 2, shift=0.5), 50, 100, 0)
    large, _ = kid(a, gaussian(400, 16, 2, shift=1.5), 50, 100, 0)
    assert same < small < large and small > 3 * same_std
    assert kid(a, b, 50, 100, 0) == kid(a, b, 50, 100, 0)  # seeded
    assert kid(a[:5], b, 3, 100, 0)[0] == pytest.approx(kid(a[:5], b, 3, 5, 0)[0])  # capped at the smaller set


def test_fewer_than_two_images_is_a_clear_error():
    with pytest.raises(DiffaugError, match="at least 2"):
        fid(gaussian(1, 4, 0), gaussian(5, 4, 1))


def make_project(root, n=6):
    """data/original, data/synthetic/vanilla (its own images) and a random-weight models/reference."""
    write_split_folder(
        root / "data/original", {c: [pattern(100 * k + i) for i in range(n)] for k, c in enumerate(CLASSES)}
    )
    write_split_folder(
        root / "data/test", {c: [pattern(500 + 100 * k + i) for i in range(3)] for k, c in enumerate(CLASSES)}
    )  # measure's copies compare with it
    rows = []
    for k, c in enumerate(CLASSES):
        (root / "data/synthetic/vanilla" / c).mkdir(parents=True)
        for i in range(n - 1):
            pattern(1000 + 100 * k + i, size=48).save(root / "data/synthetic/vanilla" / c / f"{i:04d}.png")
            rows.append({"class": c, "file": f"{c}/{i:04d}.png"})
    write_csv(root / "data/synthetic/vanilla/manifest.csv", rows, ["class", "file"])
    save_random_reference(root / "models/reference", CLASSES)
    params_file(
        root,
        classes=CLASSES,
        scrape={"source": "folder", "path": str(root)},
        mix={"source": "none"},
        split={"original_per_class": None},
        fid={"kid_subsets": 4, "kid_subset_size": 50, "device": "cpu"},
        train={"device": "cpu"},
    )


def test_stages_write_fid_and_kid_per_class_with_their_extractor(tmp_path, monkeypatch):
    from diffaug.stages import fid_reference
    from diffaug.stages import measure as fid_stage

    make_project(tmp_path)
    monkeypatch.chdir(tmp_path)
    fid_reference.main()
    meta = json.loads((tmp_path / "models/fid_reference/meta.json").read_text())
    assert meta["extractor"] == "reference" and meta["images"] == {"zero": 6, "one": 6}
    assert (tmp_path / "plots/samples/original.png").is_file()

    monkeypatch.setattr(sys, "argv", ["measure", "vanilla"])
    fid_stage.main()
    recognised = json.loads((tmp_path / "metrics/recognise/vanilla.json").read_text())
    assert recognised["images"] == 10 and set(recognised["per_class"]) == set(CLASSES)
    out = tmp_path / "metrics/fid/vanilla.json"
    first = out.read_bytes()
    report = json.loads(first)
    assert report["extractor"] == "reference" and report["original"] == 12 and report["synthetic"] == 10
    assert set(report["per_class"]) == set(CLASSES)
    for scores in [report] + list(report["per_class"].values()):
        assert scores["fid"] > 0 and scores["kid_std"] >= 0
    fid_stage.main()
    assert out.read_bytes() == first  # same inputs, same bytes

    # Features of another network are refused, not compared.
    meta["extractor_id"] = "reference:0000"
    (tmp_path / "models/fid_reference/meta.json").write_text(json.dumps(meta))
    with pytest.raises(DiffaugError, match="fid_reference"):
        fid_stage.main()


def test_a_source_with_an_empty_class_is_measured_and_says_so(tmp_path, monkeypatch, capsys):
    """A filtered source that kept no image of a class: the measure completes for the others, records
    the class as too few (no score), and warns; the report flags it."""
    import shutil

    from diffaug.stages import fid_reference
    from diffaug.stages import measure as fid_stage
    from diffaug.study.report.fid import FidTable
    from diffaug.study.report.summary import _fid_lines

    make_project(tmp_path)
    folder = tmp_path / "data/synthetic/vanilla"

    def drop(cls: str) -> None:
        shutil.rmtree(folder / cls)
        rows = [r for r in read_csv(folder / "manifest.csv") if r["class"] != cls]
        write_csv(folder / "manifest.csv", rows, ["class", "file"])

    drop("zero")  # none of `zero`
    monkeypatch.chdir(tmp_path)
    fid_reference.main()
    monkeypatch.setattr(sys, "argv", ["measure", "vanilla"])
    fid_stage.main()
    assert "WARNING: vanilla has fewer than 2 images of class zero (0)" in capsys.readouterr().err
    report = json.loads((tmp_path / "metrics/fid/vanilla.json").read_text())
    assert report["too_few"] == {"zero": 0} and report["per_class"]["zero"]["fid"] is None
    assert report["per_class"]["one"]["fid"] > 0 and report["fid"] > 0 and report["synthetic"] == 5
    copies = json.loads((tmp_path / "metrics/copies/vanilla.json").read_text())
    assert copies["test"]["images"] == 5 and copies["per_class"]["zero"]["test"] == 0.0
    md = "\n".join(_fid_lines(FidTable("reference", {"vanilla": report}, ["zero", "one"])))
    assert "⚠ vanilla has fewer than 2 images of class zero (0)" in md

    drop("one")  # nothing at all: nothing to measure
    with pytest.raises(DiffaugError, match="fewer than 2 images; raise generate.per_class"):
        fid_stage.main()


def test_inception_offline_says_which_file_and_where(tmp_path, monkeypatch):
    from diffaug.metrics.features import inception_extractor

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda *a, **k: (_ for _ in ()).throw(OSError("offline")))
    with pytest.raises(DiffaugError) as info:
        inception_extractor(torch.device("cpu"))
    message = str(info.value)
    assert "pt_inception-2015-12-05-6726825d.pth" in message
    assert str(tmp_path / "hub" / "checkpoints") in message and "fid.features=reference" in message


@pytest.fixture(scope="module")
def fake_inception_state():
    """pytorch-fid's FID InceptionV3 with random weights (built without fetching anything)."""
    import pytorch_fid.inception
    import torchvision

    with pytest.MonkeyPatch.context() as m:
        m.setattr(pytorch_fid.inception, "load_state_dict_from_url", lambda *a, **k: None)
        m.setattr(torchvision.models.inception.Inception3, "load_state_dict", lambda self, *a, **k: None)
        torch.manual_seed(0)
        return pytorch_fid.inception.fid_inception_v3().state_dict()


def place_weights(tmp_path, monkeypatch, obj):
    from diffaug.metrics.features import inception_weights_path

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    path = inception_weights_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(obj, path)
    return path


def spy_torch_load(monkeypatch) -> list[dict]:
    calls, real = [], torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: calls.append(k) or real(*a, **k))
    return calls


def test_inception_weights_with_another_hash_are_refused_unopened(tmp_path, monkeypatch, fake_inception_state):
    from pytorch_fid.inception import FID_WEIGHTS_URL

    from diffaug.metrics.features import INCEPTION_SHA256, inception_extractor

    path = place_weights(tmp_path, monkeypatch, fake_inception_state)  # right shape, not the real weights
    loads = spy_torch_load(monkeypatch)
    with pytest.raises(DiffaugError) as info:
        inception_extractor(torch.device("cpu"))
    message = str(info.value)
    assert str(path) in message and INCEPTION_SHA256 in message and FID_WEIGHTS_URL in message
    assert message.count(". ") == 0 and message.endswith(".")  # one sentence
    assert loads == []  # never unpickled


def test_inception_weights_with_the_known_hash_load_weights_only_as_pytorch_fid(
    tmp_path, monkeypatch, fake_inception_state
):
    """Our FID Inception, from pytorch-fid's blocks, gives pytorch-fid's own InceptionV3 features."""
    import pytorch_fid.inception

    from diffaug.io import sha256_file
    from diffaug.metrics import features
    from diffaug.metrics.features import extract, inception_extractor

    path = place_weights(tmp_path, monkeypatch, fake_inception_state)
    monkeypatch.setattr(features, "INCEPTION_SHA256", sha256_file(path))  # plays the real file
    loads = spy_torch_load(monkeypatch)
    extractor = inception_extractor(torch.device("cpu"))
    assert [k.get("weights_only") for k in loads] == [True]
    assert extractor.name == "inception" and extractor.image_size == 299
    pattern(0).save(tmp_path / "0.png")
    files = [tmp_path / "0.png"]  # one image: a forward pass at 299 px takes seconds on a small CPU
    ours = extract(extractor, files, batch_size=2)
    assert ours.shape == (1, 2048) and np.isfinite(ours).all()

    monkeypatch.setattr(pytorch_fid.inception, "load_state_dict_from_url", lambda *a, **k: fake_inception_state)
    theirs = pytorch_fid.inception.InceptionV3([3]).eval()
    images = features.load_images(files, 299).float() / 255.0
    with torch.no_grad():
        expected = theirs(images)[0].flatten(1).numpy()
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-5)


TRIGGERED = []


def _unpickled():
    TRIGGERED.append(True)


class Gadget:
    def __reduce__(self):
        return (_unpickled, ())


def test_inception_file_with_the_known_hash_still_cannot_run_code(tmp_path, monkeypatch):
    from diffaug.io import sha256_file
    from diffaug.metrics import features
    from diffaug.metrics.features import inception_extractor

    path = place_weights(tmp_path, monkeypatch, {"Conv2d_1a_3x3.conv.weight": torch.zeros(1), "x": Gadget()})
    monkeypatch.setattr(features, "INCEPTION_SHA256", sha256_file(path))
    with pytest.raises(DiffaugError, match="could not be loaded as plain weights"):
        inception_extractor(torch.device("cpu"))
    assert TRIGGERED == []  # weights_only: the pickle's code was not called


@pytest.mark.parametrize(
    "sections, words",
    [
        ({"fid": {"features": "clip"}}, "fid.features"),
        ({"fid": {"kid_subset_size": 1}}, "fid.kid_subset_size"),
        ({"clip": {"template": "a photo"}}, "clip.template"),
    ],
)
def test_bad_fid_and_clip_params_name_the_key(tmp_path, sections, words):
    from diffaug.params import ParamsError, load_params

    with pytest.raises(ParamsError, match=words):
        load_params(params_file(tmp_path, **sections))
