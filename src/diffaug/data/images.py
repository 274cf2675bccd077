"""Decoding untrusted image bytes, normalising them to RGB PNG, and perceptual hashes.

Untrusted files reach Pillow only through `decode_image`: a short list of formats (no EPS, whose plugin
runs Ghostscript, nor any other plugin), a pixel limit read from the header before anything is decoded,
and colour profiles applied so the same pixels always give the same PNG bytes.
"""

from __future__ import annotations

import io
import re
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError
from scipy.fft import dctn

# The formats a dataset image may come in; GIF and WebP animations give their first frame.
FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")
# Pillow's own decompression-bomb guard (Image.MAX_IMAGE_PIXELS) is left at Pillow's default as a backstop
# behind `scrape.max_pixels`, which may not exceed it (config.validate), so the param means what it says.
SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


class NotAnImage(ValueError):
    """Bytes that are not a complete image (HTML, text, truncated data, unknown format)."""

    reason = "not_an_image"  # the scrape report's skip reason


class TooManyPixels(NotAnImage):
    """An image larger than `scrape.max_pixels`, refused from its header before it is decoded."""

    reason = "too_many_pixels"


def to_srgb(im: Image.Image) -> Image.Image:
    """Pixels in sRGB, without their ICC profile: converted through it, or, if it is unusable, as they are."""
    icc = im.info.get("icc_profile")
    if icc and im.mode in ("RGB", "RGBA", "CMYK", "L", "LA", "P", "PA"):  # 16-bit modes: to_rgb scales them
        try:
            if im.mode in ("LA", "P", "PA"):
                im = im.convert("RGBA" if im.has_transparency_data else "RGB")
            im = ImageCms.profileToProfile(
                im, ImageCms.ImageCmsProfile(io.BytesIO(icc)), SRGB, outputMode="RGBA" if im.mode == "RGBA" else "RGB"
            )
        except (ImageCms.PyCMSError, OSError, ValueError):
            pass  # a broken or mismatched profile: keep the pixels, drop the profile
    im.info.pop("icc_profile", None)
    return im


def to_rgb(im: Image.Image) -> Image.Image:
    if im.mode in ("RGBA", "LA", "P", "PA") or (im.mode in ("RGB", "L") and "transparency" in im.info):
        # Transparent pixels become white, not black, as a browser shows them.
        rgba = im.convert("RGBA")
        rgb = Image.new("RGB", rgba.size, (255, 255, 255))
        rgb.paste(rgba, mask=rgba.getchannel("A"))
        return rgb
    if im.mode.startswith("I;16") or im.mode in ("I", "F"):
        # 16-bit (and 32-bit) greyscale: scale to 8 bits; convert() would clip everything above 255.
        top = 255.0 if im.mode == "F" and np.asarray(im).max() <= 255 else 65535.0
        gray = np.clip(np.asarray(im, dtype=np.float64) * (255.0 / top), 0, 255)
        return Image.fromarray(np.round(gray).astype(np.uint8), mode="L").convert("RGB")
    return im.convert("RGB")


def decode_image(source: Path | bytes, max_side: int, max_pixels: int) -> Image.Image:
    """Decode fully (so truncated files fail here), convert to sRGB RGB without metadata, optionally shrink.

    Raises TooManyPixels for an image of more than `max_pixels` pixels, from its header alone.
    """
    if isinstance(source, bytes):
        if not source:
            raise NotAnImage("empty file")
        source = io.BytesIO(source)
    elif source.stat().st_size == 0:
        raise NotAnImage("empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source, formats=FORMATS) as im:
                check_pixels(im.size, max_pixels)  # before load(): nothing is decoded yet
                im.load()
                rgb = to_rgb(to_srgb(ImageOps.exif_transpose(im)))  # phone photos carry their rotation in EXIF
    except UnidentifiedImageError:
        raise NotAnImage("not an image in an allowed format (" + ", ".join(FORMATS) + ")") from None
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        # Pillow's guard, checked while opening, sits above max_pixels (config.validate): the same verdict.
        raise TooManyPixels(f"more than scrape.max_pixels = {max_pixels:,} pixels") from None
    except NotAnImage:  # too many pixels
        raise
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        # Pillow's messages may embed object addresses; keep reports byte-identical across runs.
        why = re.sub(r" at 0x[0-9a-fA-F]+", "", str(e) or type(e).__name__)
        raise NotAnImage(f"truncated or corrupt: {why}") from None
    if rgb.width < 1 or rgb.height < 1:
        raise NotAnImage("image has no pixels")
    if max_side and max(rgb.size) > max_side:
        scale = max_side / max(rgb.size)
        size = (max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale)))
        rgb = rgb.resize(size, Image.Resampling.LANCZOS)
    rgb.info = {}  # gamma, EXIF, transparency keys: metadata that would make equal pixels differ in bytes
    return rgb


def check_pixels(size: tuple[int, int], max_pixels: int) -> None:
    width, height = size
    if width * height > max_pixels:
        raise TooManyPixels(
            f"{width}x{height} = {width * height:,} pixels, more than scrape.max_pixels = {max_pixels:,}"
        )


def is_complete_image(path: Path, max_pixels: int) -> bool:
    """Whether a cached download is worth keeping: a whole image (one too large is complete, just refused)."""
    try:
        decode_image(path, 0, max_pixels)
    except TooManyPixels:
        return True
    except NotAnImage:
        return False
    return True


def png_bytes(image: Image.Image) -> bytes:
    """PNG without metadata: the same pixels always give the same bytes."""
    if image.info:  # an ICC profile or a transparency key would be written into the file
        image = image.copy()
        image.info = {}
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()


def phash(image: Image.Image) -> int:
    """64-bit DCT perceptual hash (the classic pHash): robust to resizing and recompression."""
    gray = np.asarray(image.convert("L").resize((32, 32), Image.Resampling.LANCZOS), dtype=np.float64)
    low = dctn(gray, norm="ortho")[:8, :8].flatten()
    bits = low > np.median(low[1:])  # the DC term would dominate the median
    return int(np.packbits(bits).view(">u8")[0])


def hamming_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise Hamming distances between two arrays of 64-bit hashes."""
    x = a.astype(np.uint64)[:, None] ^ b.astype(np.uint64)[None, :]
    return np.bitwise_count(x).astype(np.int64)
