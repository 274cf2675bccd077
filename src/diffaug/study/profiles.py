"""Switch params.yaml to a profile from profiles/: `diffaug profile paper`.

A profile is an overlay: only the keys whose values differ from the built-in default. The switch merges
it onto params.yaml (a mapping of settings key by key; any other value, a list or a mapping of your own
names such as study.regimes or a kind of sources, replaces), checks the result (a bad value stops the
switch, params.yaml untouched) and writes it keeping params.yaml's comments and key order. A key that
params.yaml does not have is refused by name: a misspelt key would otherwise be silently ignored.
Back to the built-in default: `git checkout params.yaml`. The switch is an ordinary params change:
commit it, and `dvc repro` / `dvc exp run` take it from there.
"""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from diffaug.cli import run
from diffaug.errors import DiffaugError
from diffaug.io import atomic_write_bytes
from diffaug.params import Params, ParamsError, Section, parse_params


def has_local_edits(path: Path) -> bool:
    """True if git reports uncommitted changes to `path` (False outside a git repository)."""
    proc = subprocess.run(
        ["git", "status", "--porcelain", "--", path.name], cwd=path.parent, capture_output=True, text=True
    )
    return proc.returncode == 0 and bool(proc.stdout.strip())


def _round_trip() -> YAML:
    """A YAML reader and writer that gives params.yaml back byte for byte, comments included."""
    rt = YAML()
    rt.preserve_quotes = True
    rt.width = 4096  # never fold a long line
    rt.indent(mapping=2, sequence=4, offset=2)
    rt.representer.add_representer(type(None), lambda r, _: r.represent_scalar("tag:yaml.org,2002:null", "null"))
    return rt


def _read(rt: YAML, path: Path) -> Any:
    try:
        return rt.load(path.read_text())
    except YAMLError as e:
        raise DiffaugError(f"{path} is not valid YAML ({' '.join(str(e).split())}).") from None


def merge_into(base: dict, changes: dict, model: type[BaseModel], where: str, prefix: str = "") -> None:
    """Write `changes` into `base` in place: a section (a field whose model is a `Section`) merges key by key,
    any other value replaces; a key `base` lacks stops with its name (`where`: the profile, for the sentence)."""
    for key, value in changes.items():
        name = f"{prefix}{key}"
        if key not in base:
            raise DiffaugError(
                f"{where}: {name} is not a key of params.yaml; correct its spelling (a profile only changes "
                "keys that params.yaml has)."
            )
        field = model.model_fields.get(key)
        section = field.annotation if field else None
        is_section = isinstance(section, type) and issubclass(section, Section)
        if is_section and isinstance(value, dict) and isinstance(base[key], dict):
            merge_into(base[key], value, section, where, f"{name}.")
        else:
            base[key] = value


def merge_profile(name: str, root: Path = Path(".")) -> tuple[str, Params]:
    """params.yaml with profiles/<name>.yaml merged onto it: the text the switch writes, and its params
    (checked as the stages will read them)."""
    profiles, params = root / "profiles", root / "params.yaml"
    source = profiles / f"{name}.yaml"
    if not source.is_file():
        known = ", ".join(sorted(p.stem for p in profiles.glob("*.yaml"))) or "none"
        raise DiffaugError(f"there is no profile {name!r} ({source}); available: {known}.")
    if not params.is_file():
        raise DiffaugError(f"{params} is missing; a profile is merged onto it: run the switch at the repository root.")
    rt = _round_trip()
    merged, changes = _read(rt, params), _read(rt, source)
    where = f"profiles/{name}.yaml"
    if not isinstance(merged, dict) or not isinstance(changes, dict):
        raise DiffaugError(f"params.yaml and {where} must each be a mapping of sections.")
    merge_into(merged, changes, Params, where)
    out = io.StringIO()
    rt.dump(merged, out)
    try:
        return out.getvalue(), parse_params(yaml.safe_load(out.getvalue()), f"params.yaml merged with {where}")
    except ParamsError as e:
        raise ParamsError(f"{str(e).removesuffix('.')}; params.yaml is left as it was.") from None


def switch(name: str, root: Path = Path("."), force: bool = False) -> Path:
    """Merge profiles/<name>.yaml onto params.yaml (see the module's docstring); return the profile's path."""
    text, _ = merge_profile(name, root)
    params = root / "params.yaml"
    if text.encode() == params.read_bytes():
        return root / "profiles" / f"{name}.yaml"  # already this profile
    if not force and has_local_edits(params):
        raise DiffaugError(
            "params.yaml has uncommitted changes, which the profile would be merged onto (and `git checkout "
            "params.yaml` would then drop); commit them, or add --force to merge onto them anyway."
        )
    atomic_write_bytes(params, text.encode())
    return root / "profiles" / f"{name}.yaml"


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = [a for a in argv if a != "--force"]
    if len(args) != 1 or args[0].startswith("-"):
        raise DiffaugError("name one profile, e.g. `diffaug profile paper` (--force merges onto local edits).")
    source = switch(args[0], force="--force" in argv)
    print(f"params.yaml now holds {source} merged onto it; `git checkout params.yaml` goes back to the default.")


if __name__ == "__main__":
    run(main)
