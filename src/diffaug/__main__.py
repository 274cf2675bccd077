"""The `diffaug` command (also `python -m diffaug`): the study and its tools as subcommands.

    diffaug study [options]        queue the study's grid as DVC experiments, run them, write the report
    diffaug report [options]       the study report from `dvc exp show`: figures, summary.md, summary.json
    diffaug profile NAME [--force] switch params.yaml to profiles/NAME.yaml (checked first)
    diffaug cost [METRICS]         device-hours per stage and seconds per synthetic image, as JSON
    diffaug params                 the params reference table (Markdown), generated from the params models

The pipeline's stages are DVC's to run (`dvc repro`, `dvc exp run`); each is `python -m diffaug.stages.<name>`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Optional

from diffaug.cli import run


def _study(argv: list[str]) -> None:
    from diffaug.study import main

    main(argv)


def _report(argv: list[str]) -> None:
    from diffaug.report.command import main

    main(argv)


def _profile(argv: list[str]) -> None:
    from diffaug.profile import main

    main(argv)


def _cost(argv: list[str]) -> None:
    from diffaug.cost import cost_summary

    print(json.dumps(cost_summary(argv[0] if argv else "metrics"), indent=2))


def _params(argv: list[str]) -> None:
    from diffaug.config import params_table

    print(params_table(), end="")


COMMANDS: dict[str, Callable[[list[str]], None]] = {
    "study": _study,
    "report": _report,
    "profile": _profile,
    "cost": _cost,
    "params": _params,
}


def main(argv: Optional[list[str]] = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print(__doc__.strip())
        if argv and argv[0] not in ("-h", "--help"):
            print(f"\nerror: unknown command {argv[0]!r}; use one of {', '.join(COMMANDS)}.", file=sys.stderr)
            sys.exit(2)
        return
    command, rest = argv[0], argv[1:]
    sys.argv = [f"diffaug {command}", *rest]  # argparse's usage line and the done-line name the subcommand
    run(lambda: COMMANDS[command](rest))


if __name__ == "__main__":
    main()
