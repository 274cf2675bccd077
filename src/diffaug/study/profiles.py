"""Switch params.yaml to a profile from profiles/: `diffaug profile paper`.

The profile is checked first (a bad value stops the switch, params.yaml untouched), then copied over
params.yaml. Back to the built-in default: `git checkout params.yaml`. The switch is an ordinary
params change: commit it, and `dvc repro` / `dvc exp run` take it from there.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from diffaug.cli import run
from diffaug.errors import DiffaugError
from diffaug.params import load_params


def has_local_edits(path: Path) -> bool:
    """True if git reports uncommitted changes to `path` (False outside a git repository)."""
    proc = subprocess.run(
        ["git", "status", "--porcelain", "--", path.name], cwd=path.parent, capture_output=True, text=True
    )
    return proc.returncode == 0 and bool(proc.stdout.strip())


def switch(name: str, root: Path = Path("."), force: bool = False) -> Path:
    profiles = root / "profiles"
    source = profiles / f"{name}.yaml"
    if not source.is_file():
        known = ", ".join(sorted(p.stem for p in profiles.glob("*.yaml"))) or "none"
        raise DiffaugError(f"there is no profile {name!r} ({source}); available: {known}.")
    load_params(source)
    params = root / "params.yaml"
    if not force and params.exists() and params.read_bytes() != source.read_bytes() and has_local_edits(params):
        raise DiffaugError(
            "params.yaml has uncommitted changes that the switch would overwrite; commit them, "
            "or add --force to drop them."
        )
    shutil.copyfile(source, root / "params.yaml")
    return source


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = [a for a in argv if a != "--force"]
    if len(args) != 1 or args[0].startswith("-"):
        raise DiffaugError("name one profile, e.g. `diffaug profile paper` (--force drops local edits).")
    source = switch(args[0], force="--force" in argv)
    print(f"params.yaml is now {source}; `git checkout params.yaml` goes back to the default.")


if __name__ == "__main__":
    run(main)
