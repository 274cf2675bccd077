"""The whole params.yaml (`Params`), and the rules that relate its sections: the class names, the sources
that `mix` and the study name, and whether every mix asked for fits the images there will be."""

from __future__ import annotations

import unicodedata
from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field, model_validator

from diffaug.params.classify import Clip, Evaluate, Fid, Reference, Train
from diffaug.params.data import Copies, Mix, Scrape, Split
from diffaug.params.diffusion import Base, DreamBooth, Filter, Generate, Img2Img, Prompts, TextualInversion
from diffaug.params.errors import _fail, _Refused
from diffaug.params.fields import DIGIT_WORDS, RESERVED_NAMES, SHELL_SPECIAL
from diffaug.params.sources import Sources
from diffaug.params.study import Study
from diffaug.rules import asks, candidates, imbalance_sizes, mix_counts, source_count, token_of


def _class_name_problem(name: str) -> Optional[str]:
    if not name.strip():
        return "a class name needs a visible character"
    if name != name.strip():
        return "remove the spaces at its start or end"
    if unicodedata.normalize("NFC", name) != name:
        return f"write it in composed (NFC) form, {unicodedata.normalize('NFC', name)!r}"
    if not all(c.isprintable() for c in name):
        return "a class name holds only printable characters"
    if any(c in name for c in "/" + SHELL_SPECIAL):
        return 'a class name may not hold / \\ " $ or ` (it names folders and goes into shell commands)'
    if name.startswith(".") or name.lower() in RESERVED_NAMES:
        return "it would be a hidden file or collide with a manifest or report file; rename the class"
    if len(name.encode()) > 200:
        return "a class name must be at most 200 bytes (it names folders and files)"
    return None


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    classes: list[str] = Field(description="class names in label order; they name the folders and the prompts")
    scrape: Scrape
    split: Split
    base: Base
    prompts: Prompts
    generate: Generate
    dreambooth: DreamBooth
    textual_inversion: TextualInversion
    img2img: Img2Img
    filter: Filter
    sources: Sources
    mix: Mix
    train: Train
    evaluate: Evaluate
    reference: Reference
    fid: Fid
    copies: Copies
    clip: Clip
    study: Study

    @model_validator(mode="after")
    def _classes(self):
        if len(self.classes) < 2:
            raise _fail("classes", self.classes, "list at least two class names (a classifier needs two)")
        folded: dict[str, str] = {}
        tokens: dict[str, str] = {}
        for c in self.classes:
            problem = _class_name_problem(c) or _collision(c, folded, tokens)
            if problem:
                raise _fail("classes", c, problem)
        if self.scrape.source == "digits":
            for c in self.classes:
                if c not in DIGIT_WORDS:
                    raise _fail("classes", c, "scrape.source=digits has these classes: " + ", ".join(DIGIT_WORDS))
        return self

    @model_validator(mode="after")
    def _sources_named(self):
        names = self.sources.names()
        if self.mix.source != "none" and self.mix.source not in names:
            raise _fail("mix.source", self.mix.source, "allowed: none, " + ", ".join(names))
        for s in self.study.sources:
            if s not in names:
                raise _fail("study.sources", s, "allowed (the none baseline is always included): " + ", ".join(names))
        return self

    @model_validator(mode="after")
    def _grid_fits(self):
        """Every mix the current params and the study grid ask for fits the images there will be."""
        n_max = self.split.original_per_class
        if n_max is None:  # known only after the split; `mix` checks it then
            if self.split.imbalance is not None:
                raise _fail(
                    "split.imbalance",
                    self.split.imbalance,
                    "an imbalanced split needs the largest class's size: set split.original_per_class",
                )
            return self
        sizes = sorted(set(imbalance_sizes(self.split, n_max, len(self.classes))))
        _instances_fit(self, sizes[0])
        for (key, source, p), n_original in ((a, n) for a in asks(self) for n in sizes):
            _mix_fits(self, key, source, p, n_original, n_max)
        return self


def _collision(name: str, folded: dict[str, str], tokens: dict[str, str]) -> Optional[str]:
    """What `name` collides with among the classes before it (`folded`, `tokens`: their names and tokens,
    to which it is added), or None."""
    key, token = unicodedata.normalize("NFC", name).casefold(), token_of(name).casefold()
    if key in folded:
        what = "the same name" if folded[key] == name else "the same name up to case"
        return f"it is {what} as {folded[key]!r} (folders and tokens would collide); class names must be unique"
    if token in tokens:
        return f"its Textual Inversion token {token_of(name)} is also {tokens[token]!r}'s; rename one of them"
    folded[key], tokens[token] = name, name
    return None


def _instances_fit(params: Params, n_min: int) -> None:
    """The fine-tuning methods learn from a class's real images: the smallest class must have them."""
    for key, count in (
        ("dreambooth.instance_images", params.dreambooth.instance_images),
        ("textual_inversion.images", params.textual_inversion.images),
    ):
        if count > n_min:
            raise _fail(
                key, count, f"the smallest class of d_original has {n_min} images (split.*); use at most that many"
            )


def _mix_fits(params: Params, key: str, source: str, p: float, n_original: int, n_max: int) -> None:
    """The mix at `key` = `p` of `source`, for a class of `n_original` real images, has the images it draws."""
    c = mix_counts(n_original, params.mix, p, n_max)
    if c["real"] > c["available"]:
        raise _fail(
            "mix.n_per_class",
            params.mix.n_per_class,
            f"at {key} = {p:g} the mix keeps {c['real']} real images per class but there are "
            f"{c['available']} (split.original_per_class = {n_original} minus {c['val']} for "
            "validation); lower mix.n_per_class or raise split.original_per_class",
        )
    if source == "none":
        return
    have, have_key = source_count(params, source, n_original, c["val"])
    if c["synthetic"] > have:
        raise _too_few(params, key, source, p, n_original, c, (have, have_key))


def _too_few(
    params: Params, key: str, source: str, p: float, n_original: int, c: dict[str, Any], have: tuple[int, str]
) -> _Refused:
    """The refusal of a mix that needs more `source` images than the params give it (`have`: their count, and
    the key that sets it)."""
    count, have_key = have
    balance = params.mix.mode == "balance"
    section, field = have_key.split(".")
    exact = (
        params.sources.kinds()[source] in ("txt2img", "finetuned", "real")
        and not candidates(params.sources, source) > 1.0
    )
    need = f"{c['n']} - {c['available']}" if balance else f"round({p:g} x {c['n']})"
    advice = (
        f"; raise {have_key} to at least {c['synthetic']}"
        if exact
        else f", which gives {count} a mix can use; raise {have_key}"
    )
    return _fail(
        "mix.mode" if balance else key,
        "balance" if balance else p,
        f"the mix needs {need} = {c['synthetic']} {source} images per class (n = {c['n']}: "
        f"split.original_per_class = {n_original} minus {c['val']} for validation) but "
        f"{have_key} = {getattr(getattr(params, section), field)}{advice} or lower split.original_per_class",
    )
