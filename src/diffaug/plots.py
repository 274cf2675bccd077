"""Sample grids: a row per class, so `dvc plots show` shows what a source draws."""
from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

from diffaug.io import list_images


def sample_grid(folder: Path, classes: list[str], per_class: int = 8, cell: int = 64) -> Image.Image:
    label_w = 8 * max(len(c) for c in classes) + 8
    grid = Image.new("RGB", (label_w + per_class * cell, len(classes) * cell), "white")
    draw = ImageDraw.Draw(grid)
    for row, c in enumerate(classes):
        draw.text((4, row * cell + cell // 2 - 6), c, fill="black")
        files = list_images(folder / c)[:per_class] if (folder / c).is_dir() else []
        for col, f in enumerate(files):
            with Image.open(f) as im:
                grid.paste(im.convert("RGB").resize((cell, cell), Image.Resampling.NEAREST),
                           (label_w + col * cell, row * cell))
    return grid
