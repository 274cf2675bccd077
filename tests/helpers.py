"""Small builders shared by the tests."""

from pathlib import Path

import numpy as np
from PIL import Image


def pattern(seed: int, size: int = 32) -> Image.Image:
    """A random blocky RGB image; different seeds give perceptually different images."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    return Image.fromarray(blocks).resize((size, size), Image.Resampling.NEAREST)


def write_split_folder(root: Path, files: dict[str, list[Image.Image]]) -> None:
    """A data/original-style folder: <class>/<n>.png, manifest.csv (with hashes), classes.json."""
    from diffaug.io import sha256_file, write_csv, write_json

    rows = []
    for c, images in files.items():
        (root / c).mkdir(parents=True, exist_ok=True)
        for i, im in enumerate(images):
            im.save(root / c / f"{i:03d}.png")
            rows.append({"class": c, "file": f"{c}/{i:03d}.png", "sha256": sha256_file(root / c / f"{i:03d}.png")})
    write_csv(root / "manifest.csv", rows, ["class", "file", "sha256"])
    write_json(root / "classes.json", list(files))


REPO = Path(__file__).resolve().parents[1]


def save_random_reference(folder: Path, classes: list[str]) -> None:
    """A random-weight ResNet-18 saved as models/reference (seeded): a feature network without training."""
    import torch

    from diffaug.classify.classifier import save_classifier
    from diffaug.classify.model import build_model
    from diffaug.classify.train import Result

    torch.manual_seed(0)
    model = build_model(len(classes), "scratch", small_stem=False)
    save_classifier(
        folder, Result(model.state_dict(), 1, None), {"classes": classes, "image_size": 32, "small_stem": False}
    )


def section(name: str, **overrides):
    """A params section as the repository's params.yaml has it, with `overrides` applied.

    params.yaml is the one place defaults are written, so tests start from it instead of
    constructing sections from scratch.
    """
    from diffaug.params import load_params

    value = getattr(load_params(REPO / "params.yaml"), name)
    return type(value).model_validate({**value.model_dump(), **overrides})


def params_file(folder: Path, **sections) -> Path:
    """Write `folder/params.yaml`: the repository's params.yaml with each given section's keys replaced
    (a dict is merged key by key; anything else, e.g. `classes`, replaces the value)."""
    import yaml

    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    for name, value in sections.items():
        raw[name] = {**raw[name], **value} if isinstance(value, dict) else value
    path = Path(folder) / "params.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False))
    return path
