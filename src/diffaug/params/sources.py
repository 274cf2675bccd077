"""Synthetic sources: one declaration that dvc.yaml, mix, the study, the report and cost read."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, model_validator

from diffaug.params.errors import ParamsError, _fail
from diffaug.params.fields import Section
from diffaug.rules import GENERATED_KINDS


class Txt2Img(Section):
    """The base model draws each class from data/prompts.json (stage generate@<name>)."""


class Finetuned(Section):
    """The base model with each class's fine-tuned weights (stage generate_finetuned@<name>)."""

    method: Literal["dreambooth", "textual_inversion"] = Field(description="whose per-class models draw the images")


class Img2ImgSource(Section):
    """Real images of d_original noised and denoised by the base model (stage img2img@<name>); the
    settings are the `img2img` section's."""


class Filtered(Section):
    """The images of another source that pass a filter (stage filter@<name>)."""

    of: str = Field(description="the source whose images are filtered (a txt2img, finetuned or img2img source)")
    filter: Literal["confidence", "clip"] = Field(
        description="`confidence` (the `reference` classifier, offline) or `clip` (needs `clip.model`)"
    )
    candidates: Annotated[float, Field(ge=1.0)] = Field(
        description="the `of` source makes this many times its own count as candidates; the filter is expected "
        "to keep 1 in `candidates`, so the filtered source counts as the `of` source's own count"
    )


class Real(Section):
    """Extra real images: a copy of data/pool, the held-out pool `split` draws (stage real@<name>); the
    ALIA baseline of a synthetic image's worth. Its size is split.pool_per_class."""


SOURCE_KINDS = {  # kind in params.yaml -> the stage group that writes its sources
    "txt2img": "generate",
    "finetuned": "generate_finetuned",
    "img2img": "img2img",
    "filtered": "filter",
    "real": "real",
}


class Sources(Section):
    txt2img: dict[str, Txt2Img] = Field(description="text-to-image sources: the base model and the class prompts")
    finetuned: dict[str, Finetuned] = Field(
        description="sources drawn by the per-class DreamBooth or Textual Inversion models"
    )
    img2img: dict[str, Img2ImgSource] = Field(
        description="img2img sources (SDEdit): real images of d_original, noised and redrawn by the base model"
    )
    filtered: dict[str, Filtered] = Field(
        description="filtered sources: the images of another source that pass a filter"
    )
    real: dict[str, Real] = Field(
        description="real sources: extra real images from the held-out pool "
        "(`data/pool`, `split.pool_per_class` per class), the control"
    )

    def kinds(self) -> dict[str, str]:
        """Every source name -> its kind, in the order params.yaml declares them."""
        return {name: kind for kind in SOURCE_KINDS for name in getattr(self, kind)}

    def names(self) -> list[str]:
        return list(self.kinds())

    def entry(self, kind: str, name: str, **expect) -> Section:
        """The settings of source `name` of `kind` (a stage's argument), with the fields in `expect`."""
        entry = getattr(self, kind).get(name)
        if entry is None or any(getattr(entry, k) != v for k, v in expect.items()):
            raise ParamsError(
                f"{name!r} is not a {kind} source{' of ' + str(expect) if expect else ''} in "
                f"params.yaml's sources; dvc.yaml and params.yaml disagree: run `dvc repro` again."
            )
        return entry

    def stage(self, name: str) -> str:
        """The DVC stage that writes data/synthetic/<name>."""
        return f"{SOURCE_KINDS[self.kinds()[name]]}@{name}"

    @model_validator(mode="after")
    def _names(self):
        seen: dict[str, str] = {}
        for kind in SOURCE_KINDS:
            for name in getattr(self, kind):
                if name in seen:
                    raise _fail(f"sources.{kind}.{name}", name, f"the name is already a {seen[name]} source")
                if name == "none" or not re.fullmatch(r"[a-z][a-z0-9_]*", name):
                    raise _fail(
                        f"sources.{kind}",
                        name,
                        "a source name is lower-case letters, digits and _, "
                        "starting with a letter, and not `none` (the baseline)",
                    )
                seen[name] = kind
        for name, entry in self.filtered.items():
            if seen.get(entry.of) not in GENERATED_KINDS:
                raise _fail(
                    f"sources.filtered.{name}.of",
                    entry.of,
                    "name a txt2img, finetuned or img2img source "
                    "of sources: " + ", ".join(n for n, k in seen.items() if k in GENERATED_KINDS),
                )
        return self
