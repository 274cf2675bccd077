"""The study: a grid of DVC experiments, run on the DVC queue or Ray, read back and reported.

- `command`: `diffaug study`, the options, the grid from params.yaml's study section, the executor;
- `grid`: the grid's experiments and the key schema written once (the params that place an experiment
  in the study, its seeds, its name);
- `queue`, `ray`: the executors (DVC's queue on this machine, one Ray task per experiment), with `dvc`,
  the git and dvc runner they share;
- `experiments`: the reader of `dvc exp show --json` (finished runs, and the experiments that did not finish);
- `report`: `diffaug report`, every experiment -> figures, summary.md and summary.json;
- `profiles`, `cost`: `diffaug profile` and `diffaug cost`.
"""
