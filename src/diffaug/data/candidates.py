"""What every way of collecting `d_raw` yields: candidate images, accepted or skipped by `scrape.collect`."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Optional

from PIL import Image

from diffaug.data.images import is_complete_image
from diffaug.params import Scrape


@dataclass
class Candidate:
    label: str
    source: str  # URL, path, or dataset reference: provenance for the manifest
    file: Optional[Path] = None  # the encoded image to validate (a dataset file, a cached download), or
    image: Optional[Image.Image] = None  # pixels from a trusted in-memory dataset
    error: str = ""  # why it could not be obtained
    reason: str = ""  # the report's skip reason when `error` is set: timeout, http_404, ...
    page_url: str = ""
    licence: str = ""


def reusable_image(params: Scrape):
    """A cached download is reused only while it is a whole image; anything else is fetched again."""
    return partial(is_complete_image, max_pixels=params.max_pixels)
