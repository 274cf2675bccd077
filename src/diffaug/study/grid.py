"""The study's grid: its experiments (sweeps of p per source, regime and seed, and the real-image
yardstick's smaller sizes), the params each sets, their names and their `dvc exp run -S` arguments.
The key schema is written here once: the executors (queue.py, ray.py) set these params, and the reader
of `dvc exp show` (experiments.py) places each run in the study by them."""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from typing import Optional

from diffaug.errors import DiffaugError
from diffaug.params import Params, ParamsError, parse_params

# The params that place an experiment in the study (its point), and its seed identity: runs that differ
# only in the seeds are seeds of one setting.
SOURCE, P, REGIME, AUGMENT, MODE = "mix.source", "mix.p", "train.regime", "train.augment", "mix.mode"
POINT_KEYS = (SOURCE, P, REGIME, AUGMENT, MODE)
SEED_KEYS = ("train.seed", "mix.seed")
# Real images a class (the yardstick's k): not a point key, so its runs form lines of their own, except
# for the exchange rate, which reads it as a size.
N_PER_CLASS = "mix.n_per_class"
STEPS, EPOCHS = "train.steps", "train.epochs"  # the two units of a regime's budget
STUDY = "study."  # the study's own section: no stage reads it, so it never tells two experiments apart
# Values the grid sets and the report reads back.
BASELINE = "none"  # mix.source of the paper's "only original" line
RANDAUGMENT = "randaugment"  # train.augment of the RandAugment baseline
REPLACE, ADD = "replace", "add"  # mix.mode: the paper's, and all real images plus synthetic on top
# What a point key stands for where an experiment's params lack it: a pipeline from before the key existed.
ABSENT = {SOURCE: BASELINE, P: 0.0, REGIME: "scratch", AUGMENT: "standard", MODE: REPLACE}


@dataclass(frozen=True)
class Sweep:
    """One `dvc exp run --queue` call: a source, the p values swept, and the fixed settings."""

    source: str
    p: tuple[float, ...]
    regime: str
    budget: Optional[int]  # the regime's budget in `budget_key`'s unit; None keeps the workspace's
    seed: int
    augment: Optional[str] = None  # None keeps the workspace's train.augment
    budget_key: str = STEPS  # or EPOCHS (the paper's fixed-epoch budget)
    n_per_class: Optional[int] = None  # k images a class (mix.n_per_class); None keeps the workspace's
    mode: Optional[str] = None  # mix.mode; None keeps the workspace's
    target: Optional[str] = None  # the stage `dvc exp run` reproduces with its upstream; None: every stage

    def sets(self, p: Optional[float] = None) -> dict[str, object]:
        """The params this sweep sets (`mix.p` to `p` if given, else to every p of the sweep)."""
        out = {
            SOURCE: self.source,
            P: float(p) if p is not None else list(self.p),
            REGIME: self.regime,
            **dict.fromkeys(SEED_KEYS, self.seed),
        }
        if self.augment is not None:
            out[AUGMENT] = self.augment
        if self.n_per_class is not None:
            out[N_PER_CLASS] = self.n_per_class
        if self.mode is not None:
            out[MODE] = self.mode
        if self.budget is not None:
            out[self.budget_key] = self.budget
        if self.budget_key == EPOCHS:
            out[STEPS] = None  # a fixed-epoch study of a workspace that trains for steps
        return out

    def args(self) -> list[str]:
        return [*self.targets(), *overrides(self.sets())]

    def targets(self) -> list[str]:
        return [self.target] if self.target else []

    def name(self, p: float) -> str:
        return experiment_name(self.sets(p))


def experiment_name(sets: dict[str, object]) -> str:
    """An experiment's name from the params it sets (a git ref: no spaces), so a rerun finds it,
    e.g. vanilla-k5-add-p1-scratch-20st-s0."""
    budget = "".join(f"-{sets[k]}{unit}" for k, unit in ((STEPS, "st"), (EPOCHS, "ep")) if sets.get(k) is not None)
    size = f"-k{sets[N_PER_CLASS]}" if sets.get(N_PER_CLASS) is not None else ""
    mode = f"-{sets[MODE]}" if sets.get(MODE) else ""
    augment = f"-{sets[AUGMENT]}" if sets.get(AUGMENT) else ""
    return f"{sets[SOURCE]}{size}{mode}-p{float(sets[P]):g}-{sets[REGIME]}{budget}-s{sets[SEED_KEYS[0]]}{augment}"


def stage_params(params: dict) -> dict:
    """Flat params without the study's own section: what the pipeline's stages read."""
    return {k: v for k, v in params.items() if not k.startswith(STUDY)}


def overrides(sets: dict[str, object]) -> list[str]:
    """`dvc exp run`'s `-S key=value` arguments for `sets` (a list: a sweep, for the queue)."""

    def text(v):  # 1.0, not 1: DVC would store an int
        if v is None:
            return "null"
        return ",".join(repr(float(x)) for x in v) if isinstance(v, list) else str(v)

    return [a for k, v in sets.items() for a in ("-S", f"{k}={text(v)}")]


def planned_experiments(sweeps: list[Sweep]):
    """Every experiment of the grid: (its sweep, its p)."""
    return ((sweep, p) for sweep in sweeps for p in sweep.p)


def with_sets(raw: dict, sets: dict[str, object]) -> dict:
    """params.yaml's contents with dotted keys set, as `dvc exp run -S` writes them."""
    out = copy.deepcopy(raw)
    for key, value in sets.items():
        *path, last = key.split(".")
        node = out
        for part in path:
            node = node[part]
        node[last] = value
    return out


def check_points(raw: dict, sweeps: list[Sweep]) -> int:
    """Validate the params of every experiment of the grid before queueing any; return how many."""
    n = 0
    for sweep, p in planned_experiments(sweeps):
        sets = sweep.sets(p)
        try:
            parse_params(with_sets(raw, sets))
        except ParamsError as e:
            raise ParamsError(
                f"the study's experiment {' '.join(f'{k}={v}' for k, v in sets.items())} would fail: {e}"
            ) from None
        n += 1
    return n


def few_shot(
    sources: tuple[str, ...],
    regime: str,
    budget: Optional[int],
    seed: int,
    real_per_class: tuple[int, ...],
    add_per_class: tuple[int, ...],
    budget_key: str,
) -> list[Sweep]:
    """The yardstick's "only original" runs with k real images a class (p = 0), and at each k of
    `add_per_class` every source adding k synthetic images to the k real ones (mix.mode=add, p = 1).
    A k of `add_per_class` gets its own only-original run too: the point its synthetic images add to."""
    real = sorted(set(real_per_class) | set(add_per_class))
    sweeps = [Sweep(BASELINE, (0.0,), regime, budget, seed, budget_key=budget_key, n_per_class=k) for k in real]
    return sweeps + [
        Sweep(s, (1.0,), regime, budget, seed, budget_key=budget_key, n_per_class=k, mode=ADD)
        for k in sorted(set(add_per_class))
        for s in sources
    ]


def grid(
    sources: tuple[str, ...],
    ps: tuple[float, ...],
    regimes: tuple[tuple[str, Optional[int]], ...],
    seeds: tuple[int, ...],
    randaugment: bool = False,
    real_per_class: tuple[int, ...] = (),
    add_per_class: tuple[int, ...] = (),
    budget_key: str = STEPS,
    controls: tuple[str, ...] = (),
) -> list[Sweep]:
    """The sweeps of the study; `regimes`: (regime, its budget in `budget_key`'s unit or None);
    `controls`: real sources (extra real images), run only in the few-shot points, the one place
    where a small held-out pool can fill them."""
    ps = tuple(sorted(set(float(p) for p in ps)))
    sweeps = []
    for regime, budget in regimes:
        for seed in seeds:
            baseline = tuple(p for p in ps if p < 1.0)
            if baseline:
                sweeps.append(Sweep(BASELINE, baseline, regime, budget, seed, budget_key=budget_key))
            if randaugment:
                sweeps.append(Sweep(BASELINE, (0.0,), regime, budget, seed, RANDAUGMENT, budget_key))
            synthetic = tuple(p for p in ps if p > 0.0)
            sweeps += [Sweep(s, synthetic, regime, budget, seed, budget_key=budget_key) for s in sources if synthetic]
            sweeps += few_shot(sources + controls, regime, budget, seed, real_per_class, add_per_class, budget_key)
    return sweeps


def budget_key(params: Params) -> str:
    """The param the regimes' budgets set: train.steps (equal for every mix) or train.epochs."""
    unit = params.study.budget or ("steps" if params.train.steps else "epochs")
    if unit == "steps" and not params.train.steps and None in params.study.regimes.values():
        raise DiffaugError(
            "the study's budget is steps but train.steps is null; give every regime its steps, "
            "e.g. --regimes scratch=2400,finetune=240,frozen=240."
        )
    return STEPS if unit == "steps" else EPOCHS


def sweeps_of(params: Params) -> list[Sweep]:
    """The grid that params' study section asks for; every real source not in it is a few-shot control."""
    study = params.study
    sweeps = grid(
        tuple(study.sources),
        tuple(study.p),
        tuple(study.regimes.items()),
        tuple(study.seeds),
        study.randaugment,
        tuple(study.real_per_class),
        tuple(study.add_per_class),
        budget_key(params),
        tuple(name for name in params.sources.real if name not in study.sources),
    )
    return [replace(sweep, target=study.target) for sweep in sweeps]
