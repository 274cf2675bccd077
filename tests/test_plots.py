"""Sample grids label every class readably; the built-in model names the prompt words it never learned."""

import json
import os
import shutil
import subprocess

import numpy as np
import yaml

from diffaug.diffusion.tiny.tokenizer import unknown_words
from diffaug.plots import label_text, sample_grid
from helpers import REPO, pattern


def test_every_class_name_is_drawn(tmp_path):
    classes = ["quadrat_ä", "Red Circle", "猫"]
    for i, c in enumerate(classes):
        (tmp_path / c).mkdir()
        pattern(i).save(tmp_path / c / "0.png")
    assert [label_text(c) for c in classes] == ["quadrat_ä", "Red Circle", "U+732B"]  # the font has no CJK
    grid = np.asarray(sample_grid(tmp_path, classes).convert("L"))
    for row in range(3):  # ink in each row's label area, left of the images
        assert (grid[row * 64 : (row + 1) * 64, :40] < 128).sum() > 20


def test_unknown_words_of_the_built_in_model():
    assert unknown_words(["a photo of the digit seven", "a photo of sks seven", "a photo of a <seven>"]) == []
    assert unknown_words(["a photo of the digit red circle", "a photo of the digit quadrat_ä"]) == [
        "circle",
        "quadrat_ä",
        "red",
    ]


def test_dvc_plots_show_draws_the_sample_images_and_nothing_else(tmp_path):
    """DVC writes a .gitignore into plots/samples (the samples are stage outputs); a directory plot would read
    it as data and fail ("Only JSON, YAML, CSV and TSV formats are supported"). The repository's .dvcignore
    hides every non-PNG file there (DVC 3.67 has no globs in top-level plots, nor foreach over the sources)."""
    samples = [p for p in yaml.safe_load((REPO / "dvc.yaml").read_text())["plots"] if isinstance(p, str)]
    assert samples == ["plots/samples"]
    env = dict(os.environ, DVC_NO_ANALYTICS="1")
    for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"]):
        subprocess.run(cmd, cwd=tmp_path, env=env, check=True, capture_output=True)
    shutil.copy(REPO / ".dvcignore", tmp_path / ".dvcignore")
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"plots": samples}))
    folder = tmp_path / "plots" / "samples"
    folder.mkdir(parents=True)
    pattern(0).save(folder / "vanilla.png")
    (folder / ".gitignore").write_text("/vanilla.png\n")  # as DVC writes it
    (folder / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")  # as macOS writes it
    proc = subprocess.run(["dvc", "plots", "show", "--json"], cwd=tmp_path, env=env, capture_output=True, text=True)
    shown = json.loads(proc.stdout)
    assert shown.get("errors", []) == [], shown
    assert list(shown["data"]) == ["plots/samples/vanilla.png"]
    assert shown["data"]["plots/samples/vanilla.png"][0]["type"] == "image"
