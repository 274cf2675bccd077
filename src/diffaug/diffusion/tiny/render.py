"""The built-in model's corpus: printed digits rendered with the font inside Pillow, and their captions.

It is a *different* corpus than the experiment's scanned handwriting, as Stable Diffusion learned
digits from the web and not from your dataset.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from diffaug.params import DIGIT_WORDS

IMAGE_SIZE = 32
PROMPT_TEMPLATE = "a photo of the digit {}"

# Ranges of the random rendering. Chosen so a classifier trained on scikit-learn's handwritten
# digits recognises the renders as well as possible: tall, narrow, bold, blurred.
RENDER = {
    "stroke": (0, 4),  # extra stroke width in px at font size 64 (Aileron Regular is thin)
    "shear": 0.25,  # +- horizontal shear (slant)
    "rotate": 10.0,  # +- degrees
    "height": (0.85, 1.0),  # glyph height / frame
    "aspect": (0.65, 1.05),  # factor on the glyph's own width/height
    "max_width": 0.8,  # glyph width / frame, at most
    "low_res": (8, 8, 8, 12, 16, 32),  # intermediate resolution, drawn uniformly (8 = like the scans)
    "blur_p": 0.3,  # share of images with an extra slight Gaussian blur
    "normalise": True,  # stretch ink so its darkest pixel is black, as in the scans
}

_FONT_CACHE: dict[int, ImageFont.FreeTypeFont] = {}


def _font(size: int) -> ImageFont.FreeTypeFont:
    # load_default(size=...) is Pillow's built-in scalable Aileron Regular (Pillow >= 10.1, FreeType):
    # no font file needed on any machine.
    if size not in _FONT_CACHE:
        font = ImageFont.load_default(size=size)
        if not isinstance(font, ImageFont.FreeTypeFont):
            raise RuntimeError("Pillow was built without FreeType: the scalable default font is missing")
        _FONT_CACHE[size] = font
    return _FONT_CACHE[size]


def _glyph(rng: np.random.Generator, digit: int) -> Image.Image:
    """The digit as tightly cropped ink (L mode, 255 = ink) at a random weight, slant and rotation."""
    size = 64
    stroke = int(rng.integers(*RENDER["stroke"]))
    canvas = Image.new("L", (2 * size, 2 * size), 0)
    ImageDraw.Draw(canvas).text(
        (size // 2, size // 4), str(digit), font=_font(size), fill=255, stroke_width=stroke, stroke_fill=255
    )
    # Shear (slant) then rotate: handwriting leans, print doesn't.
    shear = rng.uniform(-RENDER["shear"], RENDER["shear"])
    canvas = canvas.transform(canvas.size, Image.AFFINE, (1, shear, -shear * size, 0, 1, 0), Image.BILINEAR)
    canvas = canvas.rotate(rng.uniform(-RENDER["rotate"], RENDER["rotate"]), Image.BILINEAR)
    return canvas.crop(canvas.getbbox())


def _position(rng: np.random.Generator, work: int, w: int, h: int) -> tuple[int, int]:
    """Top-left corner: mostly near the horizontal centre (like the scans), sometimes anywhere."""
    if rng.random() < 0.3:
        x = int(rng.integers(0, work - w + 1))
    else:
        x = (work - w) // 2 + int(rng.integers(-work // 16, work // 16 + 1))
    y = int(rng.integers(0, work - h + 1))
    return min(max(x, 0), work - w), y


def render_digit(rng: np.random.Generator, digit: int, size: int = IMAGE_SIZE) -> Image.Image:
    """One training image: dark ink on white, RGB, `size` x `size`.

    The glyph is stretched to fill most of the frame height, like scikit-learn's digits (whose source
    bitmaps were size-normalised): small glyphs were barely recognisable as those digits. Most
    images then go through a low-resolution intermediate (8-16 px, area-averaged, then bicubic up)
    to get the blur of an 8x8 scan upscaled to 32x32.
    """
    work = 4 * size  # draw at 4x, then reduce: smooth edges at any intermediate resolution
    glyph = _glyph(rng, digit)
    h = int(round(work * rng.uniform(*RENDER["height"])))
    aspect = glyph.width / glyph.height * rng.uniform(*RENDER["aspect"])
    w = int(round(min(work * RENDER["max_width"], max(work * 0.12, h * aspect))))
    glyph = glyph.resize((w, h), Image.BILINEAR)
    ink = Image.new("L", (work, work), 0)
    ink.paste(glyph, _position(rng, work, w, h))
    low = int(rng.choice(RENDER["low_res"]))
    ink = ink.resize((low, low), Image.BOX)  # area average = the scans' ink counts per cell
    if RENDER["normalise"]:
        # Thin strokes average to gray at 8 px; the scans' strokes are black at their core.
        peak = max(ink.getextrema()[1], 1)
        ink = Image.eval(ink, lambda v: min(255, round(v * 255 / peak)))
    if low < size:
        ink = ink.resize((size, size), Image.BICUBIC)
    if rng.random() < RENDER["blur_p"]:
        ink = ink.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.0)))
    gray = Image.eval(ink, lambda v: 255 - v)  # dark ink on a white background
    return gray.convert("RGB")


def render_corpus(seed: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`n` rendered digits (balanced classes, shuffled) as a float tensor in [-1, 1] and their labels."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % 10)
    pixels = np.stack([np.asarray(render_digit(rng, int(c))) for c in labels])
    images = torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    return images, torch.from_numpy(labels)


def captions() -> list[str]:
    """The training captions: one per digit, then the empty prompt (for classifier-free guidance)."""
    return [PROMPT_TEMPLATE.format(w) for w in DIGIT_WORDS] + [""]
