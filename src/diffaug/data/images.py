"""Decoding untrusted image bytes, normalising them to RGB PNG, and perceptual hashes."""
from __future__ import annotations

import io
import re
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from scipy.fft import dctn

# Decompression bombs: refuse images with more pixels than a 12k x 12k photo.
Image.MAX_IMAGE_PIXELS = 144_000_000


class NotAnImage(ValueError):
    """Bytes that are not a complete image (HTML, text, truncated data, unknown format)."""


def to_rgb(im: Image.Image) -> Image.Image:
    if im.mode in ("RGBA", "LA", "P", "PA"):
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


def decode_image(data: bytes, max_side: int = 0) -> Image.Image:
    """Decode fully (so truncated files fail here), convert to RGB, optionally shrink."""
    if not data:
        raise NotAnImage("empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                im.load()
                rgb = to_rgb(ImageOps.exif_transpose(im))  # phone photos carry their rotation in EXIF
    except UnidentifiedImageError:
        raise NotAnImage("not a known image format") from None
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise NotAnImage(f"more than {Image.MAX_IMAGE_PIXELS} pixels") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        # Pillow's messages may embed object addresses; keep reports byte-identical across runs.
        raise NotAnImage("truncated or corrupt: " + re.sub(r" at 0x[0-9a-fA-F]+", "", str(e) or type(e).__name__)) from None
    if rgb.width < 1 or rgb.height < 1:
        raise NotAnImage("image has no pixels")
    if max_side and max(rgb.size) > max_side:
        scale = max_side / max(rgb.size)
        size = (max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale)))
        rgb = rgb.resize(size, Image.Resampling.LANCZOS)
    return rgb


def png_bytes(image: Image.Image) -> bytes:
    """PNG without metadata: the same pixels always give the same bytes."""
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
