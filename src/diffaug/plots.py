"""Sample grids: a row per class, so `dvc plots show` shows what a source draws."""

from __future__ import annotations

import functools
import unicodedata
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from diffaug.data.images import png_bytes
from diffaug.io import atomic_write_bytes, list_images


@functools.lru_cache(maxsize=1)
def _font() -> tuple[ImageFont.FreeTypeFont, frozenset[int]]:
    """DejaVu Sans (it ships inside matplotlib, on every machine) and the characters it can draw."""
    from fontTools.ttLib import TTFont
    from matplotlib import font_manager

    path = font_manager.findfont("DejaVu Sans", fallback_to_default=False)
    return ImageFont.truetype(path, 13), frozenset(TTFont(path)["cmap"].getBestCmap())


def label_text(name: str) -> str:
    """The class name as the font can draw it: itself, or an ASCII spelling (accents dropped, other
    characters as U+XXXX) when the font lacks a glyph, so no row is labelled with empty boxes."""
    _, glyphs = _font()
    if all(ord(c) in glyphs for c in name):
        return name
    plain = unicodedata.normalize("NFKD", name)
    return "".join(c if c.isascii() else f"U+{ord(c):04X}" for c in plain if not unicodedata.combining(c))


def sample_grid(folder: Path, classes: list[str], per_class: int = 8, cell: int = 64) -> Image.Image:
    font, _ = _font()
    labels = [label_text(c) for c in classes]
    label_w = int(max(font.getlength(t) for t in labels)) + 12
    grid = Image.new("RGB", (label_w + per_class * cell, len(classes) * cell), "white")
    draw = ImageDraw.Draw(grid)
    for row, (c, text) in enumerate(zip(classes, labels)):
        draw.text((4, row * cell + cell // 2), text, fill="black", font=font, anchor="lm")
        files = list_images(folder / c)[:per_class] if (folder / c).is_dir() else []
        for col, f in enumerate(files):
            with Image.open(f) as im:
                grid.paste(
                    im.convert("RGB").resize((cell, cell), Image.Resampling.NEAREST), (label_w + col * cell, row * cell)
                )
    return grid


def save_grid(grid: Image.Image, path: Path) -> None:
    """Written whole or not at all: a plot DVC tracks is never half a PNG."""
    atomic_write_bytes(path, png_bytes(grid))
