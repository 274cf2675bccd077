"""The command-line frame of every entry point (stages, study, report, profile): a `DiffaugError`
becomes one sentence on stderr and exit code 2, so the user sees the problem and the fix, not a
traceback."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

from diffaug.errors import DiffaugError


def run(main: Callable[[], None]) -> None:
    start = time.perf_counter()
    try:
        main()
    except DiffaugError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    path = Path(sys.argv[0])
    # diffaug report: the package's name; `diffaug report`: the subcommand's
    name = (
        sys.argv[0]
        if sys.argv[0].startswith("diffaug ")
        else path.parent.name
        if path.stem == "__main__"
        else path.stem
    )
    print(f"{name}: done in {time.perf_counter() - start:.1f} s", file=sys.stderr)
