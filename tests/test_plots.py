"""Sample grids label every class readably; the built-in model names the prompt words it never learned."""

import numpy as np

from diffaug.diffusion.tiny.tokenizer import unknown_words
from diffaug.plots import label_text, sample_grid
from helpers import pattern


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
