"""One sentence per refused value: what a validator raises, and pydantic's errors worded the same way."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel

from diffaug.errors import DiffaugError
from diffaug.params.fields import _is_model


class ParamsError(DiffaugError):
    """A value in params.yaml that is not allowed."""


class _Refused(ValueError):
    """A rule's own sentence, raised inside a validator and passed through unchanged."""


def _fail(key: str, value: Any, allowed: str) -> _Refused:
    return _Refused(f"params.yaml: {key} = {value!r} is not allowed; {allowed}.")


TYPE_TEXT = {
    "int_type": "use a whole number",
    "int_from_float": "use a whole number",
    "float_type": "use a number (write 1.0e-4, not 1e-4, which YAML reads as text)",
    "finite_number": "use a finite number",
    "bool_type": "use true or false",
    "string_type": "use text",
    "list_type": "use a list",
    "dict_type": "it must be a mapping of keys to values",
    "model_type": "it must be a mapping of keys to values",
    "model_attributes_type": "it must be a mapping of keys to values",
}


BOUNDS = {
    "greater_than_equal": ("at least", "ge"),
    "greater_than": ("greater than", "gt"),
    "less_than_equal": ("at most", "le"),
    "less_than": ("less than", "lt"),
}


def _known_keys(root: type[BaseModel], loc: tuple) -> list[str]:
    model: Any = root
    for part in loc[:-1]:
        field = model.model_fields.get(part) if _is_model(model) else None
        if field is None:
            return []
        model = field.annotation
    return list(model.model_fields) if _is_model(model) else []


def _sentence(error: dict, root: type[BaseModel]) -> str:
    """pydantic's error as `params.yaml: <key> = <value> is not allowed; <what is allowed>.` (`root`: the
    model of the whole file, whose fields name the known keys)."""
    loc = tuple(str(part) for part in error["loc"] if not isinstance(part, int))
    key, ctx = ".".join(loc) or "params.yaml", error.get("ctx") or {}
    if error["type"] == "value_error" and isinstance(ctx.get("error"), _Refused):
        return str(ctx["error"])
    if error["type"] == "missing":
        return (
            f"params.yaml: {key} is missing; params.yaml is the only place defaults are written, so copy the "
            "key from the repository's params.yaml (or a profile) and set its value."
        )
    return f"params.yaml: {key} = {error.get('input')!r} is not allowed; {_allowed(error, root)}."


def _allowed(error: dict, root: type[BaseModel]) -> str:
    kind, ctx = error["type"], error.get("ctx") or {}
    if kind == "extra_forbidden":
        return "known keys are " + ", ".join(_known_keys(root, error["loc"]))
    if kind == "literal_error":
        return "allowed: " + ", ".join(re.findall(r"'([^']*)'", ctx.get("expected", "")))
    if kind in BOUNDS:
        word, name = BOUNDS[kind]
        return f"it must be {word} {ctx.get(name):g}"
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    return TYPE_TEXT.get(kind, error["msg"])
