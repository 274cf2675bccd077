"""Reading params.yaml: validate it, or stop with one sentence."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from diffaug.params.errors import ParamsError, _sentence
from diffaug.params.root import Params


def parse_params(raw: Any, where: str = "params.yaml") -> Params:
    """Validate a params mapping (as params.yaml holds it); raise ParamsError with one sentence that
    starts with `where`, the file."""
    if not isinstance(raw, dict):
        raise ParamsError(f"{where} must be a mapping of sections.")
    try:
        return Params.model_validate(raw)
    except ValidationError as e:
        sentence = _sentence(e.errors(include_url=False)[0], Params)
        raise ParamsError(where + sentence.removeprefix("params.yaml")) from None


def load_params(path: str | Path = "params.yaml") -> Params:
    path = Path(path)
    if not path.exists():
        raise ParamsError(f"{path} is missing; run the stage from the repository root.")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ParamsError(f"{path} is not valid YAML ({' '.join(str(e).split())}).") from None
    return parse_params(raw, str(path) if path.name != "params.yaml" else "params.yaml")
