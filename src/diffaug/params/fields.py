"""What the sections share: the vocabularies, the field types (each carries its own check, and the description
where several sections mean the same by it, so a section only names them) and the `Section` base."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
# Files that live beside the class folders (data/raw, data/original, data/test, data/synthetic/<source>).
RESERVED_NAMES = ("manifest.csv", "classes.json", "report.json")
# Characters the shell still reads inside the double quotes dvc.yaml puts around a class name.
SHELL_SPECIAL = '"$`\\'
# The scraper's vocabularies (data/search.py asserts that its tables match these).
SEARCH_ENGINES = ("bing",)
LICENCES = (
    "any",
    "creative_commons",
    "public_domain",
    "free_to_share_and_use",
    "free_to_share_and_use_commercially",
    "free_to_modify_share_and_use",
    "free_to_modify_share_and_use_commercially",
)


def _device(value: str) -> str:
    if not (value in ("auto", "cpu", "cuda", "mps") or re.fullmatch(r"cuda:\d+", value)):
        raise ValueError("allowed: auto, cpu, cuda, cuda:N, mps")
    return value


def _launcher(value: str) -> str:
    # The launcher is pasted into a shell command line by dvc.yaml: only these words may appear.
    if value != "python" and not re.fullmatch(r"accelerate launch( --[a-z_]+(=| )[\w.,:-]+| --[a-z_]+)*", value):
        raise ValueError("use python, or accelerate launch with its --options (letters, digits and .,:- only)")
    return value


def _multiple_of_8(value: Optional[int]) -> Optional[int]:
    if value is not None and (value < 8 or value % 8):
        raise ValueError("use a multiple of 8 (or null)")
    return value


def _template(*fields: str):
    """A prompt template: exactly one {} (the class or its token) and only the named {fields}."""

    def check(text: str) -> str:
        if text.count("{}") != 1:
            raise ValueError("a prompt template needs exactly one {} where the class (or its token) goes")
        try:
            text.format("", **{f: "" for f in fields})
        except (KeyError, IndexError, ValueError):
            named = " and " + ", ".join("{" + f + "}" for f in fields) if fields else ""
            raise ValueError(f"a prompt template may hold only {{}}{named}; double other braces ({{{{ }}}})") from None
        return text

    return check


def _hub_or_folder(value: str) -> str:
    """A hub id (owner/name) or an existing local folder: anything else would reach the hub as a bad id."""
    if re.fullmatch(r"[\w][\w.-]*/[\w][\w.-]*", value) and ".." not in value:
        return value
    if Path(value).is_dir():
        return value
    raise ValueError("use a hub id like owner/name or an existing local folder")


def _stem(value: Any) -> Any:
    return str(value).lower() if isinstance(value, bool) else value  # YAML writes true/false as booleans


def _proportion(value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise ValueError("use a proportion between 0.0 and 1.0")
    return value


def _non_empty(values: list) -> list:
    if not values:
        raise ValueError("list at least one")
    return values


Count = Annotated[int, Field(ge=1)]
Seed = Annotated[int, Field(ge=0)]
Proportion = Annotated[float, AfterValidator(_proportion)]
Size8 = Annotated[Optional[int], AfterValidator(_multiple_of_8)]
Template = Annotated[str, AfterValidator(_template())]
Templates = Annotated[list[Template], AfterValidator(_non_empty)]
SmallStem = Annotated[Literal["auto", "true", "false"], BeforeValidator(_stem)]
Precision = Literal["auto", "no", "fp16", "bf16"]
Regime = Literal["scratch", "finetune", "frozen"]
# Fields several sections declare alike: the type carries the description too, so a section only names it
# (a field that says more gives its own `Field(description=...)`).
Device = Annotated[str, AfterValidator(_device), Field(description="`auto`, `cpu`, `cuda`, `cuda:N` or `mps`")]
Launcher = Annotated[
    str, AfterValidator(_launcher), Field(description="`python`, or `accelerate launch --num_processes N`")
]
ForwardBatch = Annotated[Count, Field(description="images per forward pass")]
Guidance = Annotated[float, Field(ge=0, description="classifier-free guidance scale")]
ImageSeed = Annotated[Seed, Field(description="seed of the per-image seeds")]
CheckpointEvery = Annotated[
    int,
    Field(
        ge=0,
        description="steps between checkpoints (in the cache, outside the outputs) a killed run resumes from, "
        "with the same result; `0`: none",
    ),
]


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


class Section(BaseModel):
    # strict: `true` is not a number and "3" is not a count; ints are still accepted for floats.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
