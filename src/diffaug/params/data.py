"""The real images: scraping, the split, the mix and the near-duplicate thresholds."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Optional

from pydantic import AfterValidator, Field, model_validator

from diffaug.params.errors import _fail
from diffaug.params.fields import LICENCES, SEARCH_ENGINES, Count, Proportion, Section, Seed, Template, _non_empty


class Scrape(Section):
    source: Literal["digits", "folder", "urls", "search"] = Field(
        description="`digits` (built in, offline), `folder` (`<path>/<class>/...`), `urls` (CSV of `url,label`), "
        "`search` (an image search engine)"
    )
    path: str = Field(
        description="the input, a dependency of `scrape`: the folder (`folder`) or CSV (`urls`); "
        "`data/input` for `digits` and `search`"
    )
    digits_size: int = Field(ge=8, description="digits: side in px the 8x8 scans are upscaled to")
    max_side: int = Field(ge=0, description="shrink larger images to this longest side (0 keeps them)")
    # Pillow refuses (as a decompression bomb) from its own MAX_IMAGE_PIXELS, 89,478,485 by default.
    max_pixels: int = Field(
        ge=1,
        le=89_478_485,
        description="larger images (width x height, read from the file's "
        "header before decoding) are refused as too_many_pixels",
    )
    workers: Count = Field(description="parallel downloads")
    timeout: float = Field(
        gt=0, description="seconds per download attempt: lookup, connect, every redirect, headers and body together"
    )
    retries: int = Field(ge=0, description="further attempts after a transient failure")
    max_bytes: Count = Field(description="larger downloads are refused")
    engine: Literal[SEARCH_ENGINES] = Field(description="search: the image search engine")
    endpoint: Optional[str] = Field(description="search: the engine's address (`null`: its own)")
    queries: Annotated[list[Template], AfterValidator(_non_empty)] = Field(
        description="search: query templates, tried in order"
    )
    per_class: Count = Field(description="search: usable images to collect per class")
    licence: Literal[LICENCES] = Field(description="search: the engine's licence filter (recorded, unverified)")
    delay: float = Field(ge=0, description="search: seconds between two requests to one host")

    @model_validator(mode="after")
    def _path_exists(self):
        want = {
            "folder": ("a folder of class sub-folders", Path.is_dir),
            "urls": ("a CSV file of url,label rows", Path.is_file),
        }.get(self.source)
        if want and not want[1](Path(self.path)):
            raise _fail(
                "scrape.path",
                self.path,
                f"scrape.source={self.source} reads {want[0]} there, and it does "
                "not exist (relative paths start at the repository's root)",
            )
        return self


class Split(Section):
    original_per_class: Optional[Count] = Field(
        description="images per class in `d_original` (paper: 700); `null` = all that remain after the test split"
    )
    test_per_class: Count = Field(description="held-out test images per class (paper: 300)")
    dedupe_distance: int = Field(
        ge=0, le=64, description="pHash Hamming distance counted as a near-duplicate of a test image"
    )
    imbalance: Optional[float] = Field(
        gt=0.0,
        le=1.0,
        description="`null` (balanced) or a long-tail ratio r: class c of C keeps "
        "n_c = round(n_max · r^(c/(C−1))) images of `d_original` (long-tailed CIFAR)",
    )
    pool_per_class: int = Field(
        ge=0,
        description="extra real images per class held out in `data/pool` (the "
        "`real` sources' images), drawn from what `d_original` and `d_test` "
        "leave, near-duplicates of either skipped; 0 = no pool",
    )
    seed: Seed = Field(description="seed of the split")


class Mix(Section):
    source: str = Field(
        description='`none` (the paper\'s "only original" baseline: the real part alone) or a '
        "synthetic source of `sources`"
    )
    p: Proportion = Field(description="proportion of synthetic images, 0.0 to 1.0")
    n_per_class: Optional[Count] = Field(description="fixed per-class total `n` (`null`: all real training images)")
    mode: Literal["replace", "add", "balance"] = Field(
        description="`replace`: round(p·n) synthetic + n − round(p·n) real; `add`: all n real + round(p·n) synthetic; "
        "`balance`: all real images, every class topped up with synthetic ones to the largest class's "
        "count (or to `n_per_class`); p is not used"
    )
    val_fraction: float = Field(ge=0.0, lt=1.0, description="validation share, for model selection")
    val_from: Literal["original", "mixed"] = Field(
        description="`original`: real images only; `mixed`: the paper's code (validation drawn from the mixed set)"
    )
    seed: Seed = Field(description="seed of the draw (the study sets it with `train.seed`)")
    exclude_test_copies: bool = Field(
        description="leave out synthetic images within `copies.phash_distance` of a `d_test` image (a leak)"
    )


class Copies(Section):
    """Near duplicates of d_test and d_original among the synthetic images (measure stages; `mix` uses the pHash)."""

    phash_distance: Annotated[int, Field(ge=0, le=64)] = Field(
        description="perceptual-hash Hamming distance (of 64 bits) at or below which an image is a near duplicate"
    )
    feature_distance: Annotated[float, Field(ge=0.0, le=2.0)] = Field(
        description="cosine distance between `fid.features` vectors at or below which an image is a near duplicate"
    )
    flag_share: Proportion = Field(
        description="the report flags a source whose share of `d_test` near duplicates is above this"
    )
