"""diffaug report [--out reports] [--input exp.json] (also diffaug report)"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from diffaug.errors import DiffaugError
from diffaug.study.experiments import experiments, from_repo
from diffaug.study.report.summary import write_report


def _load(path: Path) -> list[dict]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise DiffaugError(
            f"--input {path} is not a readable `dvc exp show --json` ({e}); "
            "save one with `dvc exp show --json > exp.json`."
        ) from None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="diffaug report", description="The study report: every experiment -> figures, summary.md and summary.json."
    )
    parser.add_argument("--out", type=Path, default=Path("reports"), help="folder for the report (default: reports)")
    parser.add_argument("--input", type=Path, help="a saved `dvc exp show --json` (default: run it)")
    args = parser.parse_args(argv)
    exps = experiments(_load(args.input)) if args.input else from_repo()
    for path in write_report(exps, args.out):
        print(path)
    print(f"report: {len(exps.runs)} finished experiments, {len(exps.not_run)} not run", file=sys.stderr)
