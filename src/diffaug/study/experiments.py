"""Reading `dvc exp show --json` (DVC 3.67): finished experiments become runs, the rest "not run".

The JSON is a list of baselines (the workspace, then commits), each with `experiments`: ranges of
revisions with an `executor` (`state`: queued, running, success or failed; null for a run made in
the workspace). A failed or unfinished experiment still carries its parent commit's metrics in
`data`, so metrics alone never make a result: only the state does.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from diffaug.errors import DiffaugError
from diffaug.paths import METRICS, metrics_key, metrics_name
from diffaug.study.grid import (
    ABSENT,
    AUGMENT,
    MODE,
    N_PER_CLASS,
    POINT_KEYS,
    REGIME,
    SEED_KEYS,
    SOURCE,
    P,
    stage_params,
)

FINISHED = (None, "success")  # executor.state of a finished run (None: run in the workspace)
WORKSPACE = "workspace"
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # dvc.lock is large: the C loader where PyYAML has it


@dataclass
class Run:
    """One finished experiment: where it sits in the study, its seeds and its metrics."""

    name: str
    source: str
    p: float
    regime: str
    augment: str
    mode: str
    seed: tuple  # (train.seed, mix.seed)
    accuracy: float
    per_class: dict[str, float]
    other: dict  # every other param: runs that differ in one are not seeds of one setting
    metrics: dict[str, dict] = field(repr=False)  # metrics file -> its data


@dataclass(frozen=True)
class NotRun:
    """An experiment that is queued, running or failed: listed by name, never a result."""

    name: str
    state: str
    setting: str  # its point and seeds, in words
    logs: str  # the command that says why


@dataclass
class Experiments:
    runs: list[Run]
    not_run: list[NotRun]
    unknown_words: dict[str, list[str]]  # source -> prompt words the base model did not know


def read_exp_show(repo: Path = Path(".")) -> list[dict]:
    try:
        done = subprocess.run(["dvc", "exp", "show", "--json"], cwd=repo, capture_output=True, text=True)
    except FileNotFoundError:
        raise DiffaugError("dvc is not installed here; run `pip install -r requirements.txt`.") from None
    if done.returncode:
        raise DiffaugError(
            f"`dvc exp show --json` failed ({done.stderr.strip().splitlines()[-1:]}); "
            "run the report from the repository root."
        )
    return json.loads(done.stdout)


def flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def revisions(states: list[dict], executor_state=None, baseline: bool = True):
    """(revision, its executor state, whether it is a baseline) for every entry of the JSON."""
    for state in states or []:
        yield state, executor_state, baseline
        for exp_range in state.get("experiments") or []:
            executor = exp_range.get("executor") or {}
            yield from revisions(exp_range.get("revs") or [], executor.get("state"), False)


def has_finished(rev: dict, state) -> bool:
    """Whether an experiment ran to its end: a finished executor state and no error."""
    return state in FINISHED and not rev.get("error")


def params_of(rev: dict) -> dict:
    """A revision's params.yaml, flattened to dotted keys."""
    return flatten((((rev.get("data") or {}).get("params") or {}).get("params.yaml") or {}).get("data") or {})


def metrics_of(rev: dict) -> dict[str, dict]:
    """A revision's metrics: file path (with /) -> its data."""
    return {
        path.replace("\\", "/"): (result or {}).get("data") or {}
        for path, result in ((rev.get("data") or {}).get("metrics") or {}).items()
    }


def _name(rev: dict) -> str:
    return rev.get("name") or (WORKSPACE if rev.get("rev") == WORKSPACE else str(rev.get("rev", ""))[:7])


def _run(rev: dict) -> Run | None:
    params, metrics = params_of(rev), metrics_of(rev)
    evaluate = metrics.get(metrics_key("evaluate")) or {}
    if evaluate.get("accuracy") is None:
        return None
    # What CPU results depend on besides params (threads, CPU, torch): runs that differ in it are no
    # seeds of one setting, so it splits them like a param.
    host = (metrics.get(metrics_key("train/metrics")) or {}).get("host") or {}
    point = {k: params.get(k, ABSENT[k]) for k in POINT_KEYS}
    return Run(
        name=_name(rev),
        source=point[SOURCE],
        p=float(point[P]),
        regime=point[REGIME],
        augment=point[AUGMENT],
        mode=point[MODE],
        seed=tuple(params.get(k) for k in SEED_KEYS),
        accuracy=float(evaluate["accuracy"]),
        per_class=evaluate.get("per_class_accuracy") or {},
        other={
            **{k: v for k, v in stage_params(params).items() if k not in POINT_KEYS + SEED_KEYS},
            **{f"host.{k}": v for k, v in host.items()},
        },
        metrics=metrics,
    )


def _setting(rev: dict) -> str:
    params = params_of(rev)
    if not params:
        return ""
    point = {k: params.get(k, ABSENT[k]) for k in POINT_KEYS}
    size = f", k = {params[N_PER_CLASS]} a class" if params.get(N_PER_CLASS) is not None else ""
    mode = f", {MODE}={point[MODE]}" if point[MODE] != ABSENT[MODE] else ""
    return (
        f"{point[SOURCE]}, p = {float(point[P]):g}{size}{mode}, {point[REGIME]}, augment {point[AUGMENT]}, "
        "seeds " + "/".join(str(params.get(k)) for k in SEED_KEYS)
    )


def words_of(value) -> set[str]:
    """`unknown_words` as a list (the stage's file), a dict of words or a comma-separated string."""
    if isinstance(value, str):
        return {w.strip() for w in value.split(",") if w.strip()}
    return {str(w) for w in value or []}  # a list, or a dict's keys


def _unknown_words(rev: dict, found: dict[str, set]) -> None:
    for path, result in metrics_of(rev).items():
        if (source := metrics_name(path, "generate")) and result.get("unknown_words"):
            found.setdefault(source, set()).update(words_of(result["unknown_words"]))


def workspace_unknown_words(repo: Path = Path(".")) -> dict[str, list[str]]:
    """The words in the workspace's own metrics/generate/<source>.json files: DVC drops lists from
    the metrics it shows (only numbers, strings and dicts of them pass), so a list of words never
    reaches `dvc exp show --json`."""
    found = {}
    for path in sorted((repo / METRICS / "generate").glob("*.json")):
        try:
            words = words_of(json.loads(path.read_text()).get("unknown_words"))
        except (OSError, ValueError, AttributeError):
            continue
        if words:
            found[path.stem] = sorted(words)
    return found


def experiments(states: list[dict], changed: list[str] = ()) -> Experiments:
    """Runs (finished, with a test accuracy), the experiments that did not finish, and the words
    the base model did not know. The workspace and a commit that repeat an experiment's params and
    metrics exactly are one measurement and count once. `changed`: the params the workspace holds
    but has not run (see `changed_params`); its metrics are then not its results."""
    runs, not_run, seen, words = [], [], set(), {}
    for rev, state, baseline in revisions(states):
        _unknown_words(rev, words)
        if not baseline and not has_finished(rev, state):
            name = _name(rev)
            not_run.append(
                NotRun(name, "failed" if rev.get("error") else state, _setting(rev), f"dvc queue logs {name}")
            )
            continue
        if rev.get("rev") == WORKSPACE and changed:
            not_run.append(NotRun(WORKSPACE, "params not run: " + ", ".join(changed), _setting(rev), "dvc status"))
            continue
        run = _run(rev)
        if run is None:
            continue
        key = json.dumps({k: v for k, v in vars(run).items() if k != "name"}, sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            runs.append(run)
    not_run.sort(key=lambda r: (r.state, r.name))
    return Experiments(runs, not_run, {s: sorted(w) for s, w in sorted(words.items())})


def changed_params(repo: Path = Path(".")) -> list[str]:
    """The params whose value in the workspace's params.yaml is not the one its last run used (as
    dvc.lock records it): an edit not run yet, or a `dvc exp run -S` that failed in the workspace.
    Its metrics then belong to other params."""
    try:
        lock = yaml.load((repo / "dvc.lock").read_text(), Loader=_Loader) or {}
        params = flatten(yaml.load((repo / "params.yaml").read_text(), Loader=_Loader) or {})
    except (OSError, yaml.YAMLError):
        return []
    used = {}
    for stage in (lock.get("stages") or {}).values():
        used.update(flatten(((stage or {}).get("params") or {}).get("params.yaml") or {}))
    missing = object()
    return sorted(k for k, v in used.items() if params.get(k, missing) != v)


def from_repo(repo: Path = Path(".")) -> Experiments:
    """The experiments of the repository at `repo`, with the words its workspace's generation did
    not know; a workspace whose params were not run is not a result."""
    exps = experiments(read_exp_show(repo), changed_params(repo))
    for source, words in workspace_unknown_words(repo).items():
        exps.unknown_words[source] = sorted(set(exps.unknown_words.get(source, [])) | set(words))
    exps.unknown_words = dict(sorted(exps.unknown_words.items()))
    return exps
