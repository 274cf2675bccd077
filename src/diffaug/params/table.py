"""The params reference page's table, from the field descriptions (a test keeps docs/params.md equal to it)."""

from __future__ import annotations

import typing

from pydantic import BaseModel

from diffaug.params.fields import _is_model
from diffaug.params.root import Params


def _rows(model: type[BaseModel], prefix: str):
    for name, field in model.model_fields.items():
        annotation, key = field.annotation, f"{prefix}{name}"
        if _is_model(annotation) and not field.description:
            yield from _rows(annotation, f"{key}.")
            continue
        yield f"| `{key}` | {field.description} |"
        entry = typing.get_args(annotation)[-1] if typing.get_origin(annotation) is dict else None
        if _is_model(entry):  # a registry: name -> settings
            yield from _rows(entry, f"{key}.<name>.")


def params_table() -> str:
    """Markdown: one row per key of params.yaml with its description."""
    return "\n".join(["| key | meaning |", "|---|---|", *_rows(Params, "")]) + "\n"
