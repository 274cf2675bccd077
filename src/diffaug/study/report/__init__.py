"""The study report: every experiment's params and metrics -> the paper's figures and tables.

    diffaug report [--out reports] [--input exp.json]

- `diffaug.study.experiments`: `dvc exp show --json` -> finished runs and the experiments that did not finish;
- `points`, `stats`: runs pooled over seeds into study points (`pool_points`), and the paper's two
  questions (adding, replacing) as differences paired by seed, with 95% Student-t intervals;
- `findings`: which of the paper's findings hold on this run, in words built from the numbers;
- `analysis`: all of it computed once (`analyse` -> `Analysis`); `figures`, `fid`, `summary`: the PNGs,
  Table 1, summary.md and summary.json, written into `--out` only when complete;
- `command`: the command.
"""
