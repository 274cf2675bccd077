"""The rules that shape stage outputs from params: how many images each stage takes and makes, and
the Textual Inversion token a class gets.

`mix` draws `mix_counts` images per class, `split` keeps `imbalance_sizes`, the generation stages
make `made_count`, a filtered source keeps what `needed` says; the params check (params) runs the
same functions to refuse a grid that cannot fit before any stage starts. This module is a dep of
every stage that uses it, so editing a rule reruns what it shapes (params, schema only, is not).
Params objects come in as arguments: nothing here imports config at run time.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    from diffaug.params import Mix, Params, Sources, Split

GENERATED_KINDS = ("txt2img", "finetuned", "img2img")  # the kinds whose stage draws images


def token_of(label: str) -> str:
    """The Textual Inversion placeholder token of a class: `<hot-dog>` for "hot dog"."""
    return "<" + "-".join(label.split()) + ">"


def round_half_up(x: float) -> int:
    """0.5 -> 1, 2.5 -> 3 (not Python's banker's rounding): counts never depend on parity."""
    return int(math.floor(x + 0.5))


def n_val_of(n_original: int, mix: Mix) -> int:
    """Validation images of a class of `n_original` real images (real only, unless `val_from: mixed`)."""
    return round_half_up(mix.val_fraction * n_original) if mix.val_from == "original" else 0


def mix_counts(n_original: int, mix: Mix, p: Optional[float] = None, n_largest: Optional[int] = None) -> dict[str, int]:
    """How a class of `n_original` real images is mixed at `p` (default `mix.p`): validation images,
    the per-class total n, and how many real and synthetic training images the mix takes.
    `mode: balance` keeps every real image and fills up to n = mix.n_per_class, or to the real
    training images of the largest class, which has `n_largest` (default: this class's size)."""
    p = mix.p if p is None else p
    n_val = n_val_of(n_original, mix)
    available = n_original - n_val
    if mix.mode == "balance":
        largest = n_largest or n_original
        n = mix.n_per_class or largest - n_val_of(largest, mix)
        return {
            "val": n_val,
            "available": available,
            "n": n,
            "synthetic": max(0, n - available),
            "real": min(n, available),
        }
    n = mix.n_per_class or available
    synthetic = round_half_up(p * n)
    return {
        "val": n_val,
        "available": available,
        "n": n,
        "synthetic": synthetic,
        "real": n if mix.mode == "add" else n - synthetic,
    }


def imbalance_sizes(split: Split, n_max: int, k: int) -> list[int]:
    """d_original's size of each of `k` classes, in label order (all n_max when balanced)."""
    if split.imbalance is None or k < 2:
        return [n_max] * k
    return [max(1, round_half_up(n_max * split.imbalance ** (c / (k - 1)))) for c in range(k)]


def candidates(sources: Sources, name: str) -> float:
    """How many times its own count source `name` makes, for the filters that read it (1.0: none do)."""
    return max([f.candidates for f in sources.filtered.values() if f.of == name], default=1.0)


def made_count(params: Params, name: str, n_original: Optional[int] = None) -> int:
    """Images per class the stage of a generated source makes (its filters' candidates included);
    `n_original`, the class's real images, counts for img2img.per_image."""
    kind = params.sources.kinds()[name]
    if kind not in GENERATED_KINDS:
        raise ValueError(f"{name} is {kind}, not generated")
    if kind != "img2img":
        own = params.generate.per_class
    else:
        own = params.img2img.per_class or params.img2img.per_image * n_original
    return math.ceil(own * candidates(params.sources, name))


def source_count(params: Params, name: str, n_original: int, n_val: int = 0) -> tuple[int, str]:
    """(images per class of source `name` a mix can use when `n_val` of the class's `n_original` real
    images are for validation, the key that raises it). An img2img image whose parent is for
    validation is not used (counted for the worst case); a filtered source counts as its source's
    own count (`candidates` times fewer than that source makes), and is checked again at runtime."""
    kind = params.sources.kinds()[name]
    if kind == "real":  # at most: a class with fewer leftovers has fewer, which `mix` reports
        return params.split.pool_per_class, "split.pool_per_class"
    if kind == "filtered":
        entry = params.sources.filtered[name]
        have, key = source_count(params, entry.of, n_original, n_val)
        return math.floor(have / entry.candidates), key
    made = made_count(params, name, n_original)
    if kind != "img2img":
        return made, "generate.per_class"
    key = "img2img.per_class" if params.img2img.per_class else "img2img.per_image"
    # Image i's parent is real image i % n_original: the first `extra` parents have one child more.
    most, extra = divmod(made, n_original)
    lost = (most + 1) * min(n_val, extra) + most * max(0, n_val - extra)
    return made - lost, key


def asks(params: Params) -> list[tuple[str, str, float]]:
    """(key, source, p) of every mix the current params and the study grid (as study.py queues it) ask for."""
    out = [("mix.p", params.mix.source, params.mix.p)]
    return out + [
        ("study.p", s, p)
        for s in ["none", *params.study.sources]
        for p in params.study.p
        if (p < 1.0 if s == "none" else p > 0.0)
    ]


def needed(params: Params, name: str, n_original: int, n_largest: int) -> int:
    """The most images of source `name` a class of `n_original` real images gives a mix of these params
    (0 if none mixes it); `n_largest`: the largest class's real images (for mix.mode: balance)."""
    return max(
        [
            mix_counts(n_original, params.mix, p, n_largest)["synthetic"]
            for _, source, p in asks(params)
            if source == name
        ],
        default=0,
    )


def more_of(params, source: str) -> str:
    """How to get more images of `source`, in words (for the errors of `mix` and `measure`)."""
    kind = params.sources.kinds().get(source)
    if kind == "filtered":
        return (
            f"raise sources.filtered.{source}.candidates (or {source_count(params, source, 1)[1]}) or lower the "
            "filter's threshold"
        )
    if kind == "img2img":
        return "raise img2img.per_class or img2img.per_image"
    if kind == "real":  # the pool holds at most what d_original and d_test leave of the scraped images
        return "raise split.pool_per_class (and scrape more images if the pool has run out)"
    return "raise generate.per_class"
