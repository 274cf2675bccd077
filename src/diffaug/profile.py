"""Switch params.yaml to a profile from profiles/: `PYTHONPATH=src python -m diffaug.profile paper`.

The profile is checked first (a bad value stops the switch, params.yaml untouched), then copied over
params.yaml. Back to the built-in default: `git checkout params.yaml`. The switch is an ordinary
params change: commit it, and `dvc repro` / `dvc exp run` take it from there.
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

from diffaug.config import load_params
from diffaug.errors import DiffaugError
from diffaug.stages import run


def switch(name: str, root: Path = Path(".")) -> Path:
    profiles = root / "profiles"
    source = profiles / f"{name}.yaml"
    if not source.is_file():
        known = ", ".join(sorted(p.stem for p in profiles.glob("*.yaml"))) or "none"
        raise DiffaugError(f"there is no profile {name!r} ({source}); available: {known}.")
    load_params(source)
    shutil.copyfile(source, root / "params.yaml")
    return source


def main() -> None:
    if len(sys.argv) != 2 or sys.argv[1].startswith("-"):
        raise DiffaugError("name one profile, e.g. `python -m diffaug.profile paper`.")
    source = switch(sys.argv[1])
    print(f"params.yaml is now {source}; `git checkout params.yaml` goes back to the default.")


if __name__ == "__main__":
    run(main)
