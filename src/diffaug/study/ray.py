"""The study on Ray (`diffaug study --executor ray`): one Ray task per grid point.

DVC's queue pins no worker to a GPU and runs on one machine only, so each experiment runs as a
Ray task instead: Ray picks the GPU (it sets CUDA_VISIBLE_DEVICES) or the node, and the task
- clones the repository (or --git-remote) at the study's commit into a temporary directory,
- gets the shared stages' outputs: this machine's DVC cache shared through links, or `dvc pull`
  from --dvc-remote,
- runs `dvc exp run --name <point> -S ...` and `dvc exp push`es the experiment to the origin.
The driver pulls the experiments back (`dvc exp pull`, where there is a git remote), so `dvc exp
show` here lists them all. A rerun skips the points that already have a finished experiment with
the same params; a failed run is tried again `study.retries` times, then reported by name.
Only this module imports ray (requirements-ray.txt).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Optional

import yaml

import diffaug
from diffaug.errors import DiffaugError
from diffaug.params import Study
from diffaug.study.dvc import dvc, failure, git, run_tool, up_to_date
from diffaug.study.experiments import flatten, has_finished, params_of, read_exp_show, revisions
from diffaug.study.grid import Sweep, overrides, planned_experiments, stage_params, with_sets

REMOTE = "diffaug-study"  # the DVC remote --dvc-remote is added as (in .dvc/config.local)
LOGS = Path(".dvc/tmp/study")  # one log per experiment: <name>.log (git ignores .dvc/tmp)


def resources(study: Study, cluster: dict[str, float]) -> dict[str, float]:
    """What one experiment asks Ray for: its GPU share where the cluster has GPUs, else CPU cores."""
    key, want = ("GPU", study.gpus_per_run) if cluster.get("GPU", 0) > 0 else ("CPU", study.cpus_per_run)
    if want > cluster.get(key, 0):
        field = "gpus_per_run" if key == "GPU" else "cpus_per_run"
        raise DiffaugError(
            f"study.{field} is {want:g} but the Ray cluster has {cluster.get(key, 0):g} {key}s in "
            f"all, so no experiment could start; lower study.{field}."
        )
    return {"num_gpus": float(want)} if key == "GPU" else {"num_cpus": float(want)}


def finished(states: list[dict], commit: str, wanted: dict[str, dict]) -> set[str]:
    """The names in `wanted` (name -> params.yaml it runs with) that have a finished experiment of
    `commit` with exactly those params (study.* aside: no stage reads it)."""
    done = set()
    for rev, state, baseline in revisions([s for s in states if s.get("rev") == commit]):
        name = rev.get("name")
        if (
            not baseline
            and name in wanted
            and has_finished(rev, state)
            and stage_params(params_of(rev)) == stage_params(flatten(wanted[name]))
        ):
            done.add(name)
    return done


def check_clean() -> None:
    """The workers clone the commit, so every change they must see has to be committed."""
    if not Path(".git").exists():
        raise DiffaugError("the Ray executor clones the repository, so run it from the root of a git repository.")
    dirty = [
        line[3:] for line in git("status", "--porcelain", "--untracked-files=no").splitlines() if line[3:] != "dvc.lock"
    ]
    if dirty:
        raise DiffaugError(
            f"{', '.join(dirty[:3])} {'has' if len(dirty) == 1 else 'have'} uncommitted changes, which "
            "the workers' clones would not see; commit them (git commit -am ...) and run the study again."
        )


def commit_shared_outputs() -> None:
    """Commit dvc.lock (and the .gitignore files DVC writes): they tell every clone which cached outputs
    of the shared stages to check out."""
    made = [
        line[3:]
        for line in git("status", "--porcelain", "--untracked-files=all").splitlines()
        if line[3:] == "dvc.lock" or line[3:].endswith(".gitignore")
    ]
    if made:
        git("add", "--", *made)
        git("commit", "-q", "-m", "study: dvc.lock of the shared stages, for the Ray executor's clones", "--", *made)
        print(
            f"study: committed {', '.join(made)} (the shared stages' outputs), so every worker checks them out",
            file=sys.stderr,
        )


def publish(git_remote: str) -> str:
    """Push the study's branch to `git_remote`; return the URL the workers clone."""
    url = git("remote", "get-url", git_remote) if git_remote in git("remote").split() else git_remote
    branch = git("rev-parse", "--abbrev-ref", "HEAD")
    if branch == "HEAD":
        raise DiffaugError("--git-remote needs a branch to push the study's commit to; check out a branch first.")
    git("push", "-q", git_remote, f"HEAD:refs/heads/{branch}")
    return url


def prepare(git_remote: Optional[str], dvc_remote: Optional[str]) -> tuple[str, str]:
    """Bring the shared stages up to date here and make them reachable to every worker; return
    (the git origin the workers clone, the commit they check out)."""
    check_clean()
    up_to_date()
    commit_shared_outputs()
    commit = git("rev-parse", "HEAD")
    if dvc_remote:
        dvc("remote", "add", "--local", "--force", REMOTE, dvc_remote)
        dvc("push", "-q", "-r", REMOTE)
    return (publish(git_remote) if git_remote else str(Path.cwd())), commit


def clone_settings(cache: Optional[str], dvc_remote: Optional[str]) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
    """A clone's .dvc/config.local, and how it gets the shared stages' outputs and pushes its experiment.

    One machine: the clone's outputs link to this repository's cache (group-writable, so workers of one
    group share it); across machines: the shared stages come from the DVC remote. The config is
    written, not set with `dvc config`: every dvc process costs a second or more."""
    if cache:
        config = f'[cache]\n    dir = {cache}\n    shared = group\n    type = "reflink,hardlink,symlink,copy"\n'
        return config, ("checkout",), ("--no-cache",)
    config = f"[core]\n    remote = {REMOTE}\n['remote \"{REMOTE}\"']\n    url = {dvc_remote}\n"
    return config, ("pull",), ("--remote", REMOTE)


def run_point(
    origin: str, commit: str, name: str, args: list[str], cache: Optional[str], dvc_remote: Optional[str]
) -> dict:
    """One experiment in its own clone (the body of a Ray task). Returns whether it succeeded, its
    log, and what Ray gave it (CUDA_VISIBLE_DEVICES, resources)."""
    import ray

    start, log = time.time(), []
    context = ray.get_runtime_context()
    base = Path(tempfile.mkdtemp(prefix=f"diffaug-{name}-"))
    clone = base / "repo"
    config, get, push = clone_settings(cache, dvc_remote)

    def step(*cmd: str, cwd: Optional[Path] = clone) -> bool:
        proc = run_tool(list(cmd), cwd)
        log.append(f"$ {' '.join(cmd)}\n{proc.stdout}{proc.stderr}")
        return proc.returncode == 0

    try:
        ok = (
            step("git", "clone", "--quiet", "--no-checkout", origin, str(clone), cwd=base)
            and step("git", "checkout", "--quiet", commit)
            and (clone / ".dvc" / "config.local").write_text(config) > 0
            and step("dvc", *get, "--quiet", "--allow-missing")
            and step("dvc", "exp", "run", "--name", name, *args)
            and step("dvc", "exp", "push", *push, "origin", name)
        )
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return {
        "name": name,
        "ok": ok,
        "log": "\n".join(log),
        "seconds": time.time() - start,
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "node": context.get_node_id(),
        "resources": context.get_assigned_resources(),
    }


def import_ray():
    try:
        import ray
    except ImportError:
        raise DiffaugError("the Ray executor needs ray: pip install -r requirements-ray.txt") from None
    return ray


def submitter(study: Study, address: Optional[str], clones: tuple, dvc_remote: Optional[str]) -> Callable:
    """Join (or start) Ray; return `submit(name, args)`, which starts experiment `name` as a Ray task in a
    clone of `clones` (origin, commit) with `dvc exp run` arguments `args`."""
    ray = import_ray()
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, logging_level="WARNING")
    ask = resources(study, ray.cluster_resources())
    cache = None if dvc_remote else dvc("cache", "dir").strip()
    # The task's code travels with it, so nodes need ray and dvc but not this package installed.
    ray.cloudpickle.register_pickle_by_value(diffaug)
    # Ray reruns a task whose worker died; runs that fail are retried by run_tasks.
    task = ray.remote(run_point).options(**ask, max_retries=study.retries)
    print(f"study: each experiment runs on Ray with {', '.join(f'{k}={v:g}' for k, v in ask.items())}", file=sys.stderr)
    return lambda name, args: task.remote(*clones, name, args, cache, dvc_remote)


def run_tasks(submit: Callable[[str], object], todo: list[str], retries: int) -> tuple[list[dict], list[str]]:
    """Run `todo` through `submit`, each failure again up to `retries` times, every log into LOGS;
    return the tasks' results and the names that failed."""
    import ray

    pending = {submit(n): (n, 0) for n in todo}
    results, failed = [], []
    LOGS.mkdir(parents=True, exist_ok=True)
    while pending:
        [ref], _ = ray.wait(list(pending), num_returns=1)
        name, attempt = pending.pop(ref)
        try:
            result = ray.get(ref)
        except ray.exceptions.RayError as e:  # its worker or node died, more often than Ray retries
            result = {"name": name, "ok": False, "log": f"the Ray task died: {e}"}
        (LOGS / f"{name}.log").write_text(result["log"])
        if not result["ok"] and attempt < retries:
            print(f"study: {name} failed; running it again ({attempt + 1} of {retries})", file=sys.stderr)
            pending[submit(name)] = (name, attempt + 1)
            continue
        results.append(result)
        failed += [] if result["ok"] else [name]
        print(
            f"study: {len(results)} of {len(todo)} experiments finished ({name}: {'ok' if result['ok'] else 'failed'})",
            file=sys.stderr,
        )
    return results, failed


def run_study(
    study: Study,
    sweeps: list[Sweep],
    address: Optional[str],
    git_remote: Optional[str],
    dvc_remote: Optional[str],
    after: Callable[[], None],
) -> list[dict]:
    """Run the grid's missing experiments on Ray, then `after` (the report); return the tasks' results."""
    import_ray()  # before any git or dvc work: without ray, nothing to prepare for
    if dvc_remote and "://" not in dvc_remote:  # a path: the same for the driver and every clone
        dvc_remote = str(Path(dvc_remote).resolve())
    committed = yaml.safe_load(Path("params.yaml").read_text())  # what the clones' params.yaml holds
    sets = {sweep.name(p): sweep.sets(p) for sweep, p in planned_experiments(sweeps)}
    clones = prepare(git_remote, dvc_remote)
    if git_remote:  # experiments pushed by an earlier run that this clone has not seen yet
        dvc("exp", "pull", "--no-cache", git_remote, check=False)
    done = finished(read_exp_show(), clones[1], {n: with_sets(committed, s) for n, s in sets.items()})
    todo = [n for n in sets if n not in done]
    print(f"study: {len(done)} of {len(sets)} experiments finished before; running {len(todo)}", file=sys.stderr)
    submit = submitter(study, address, clones, dvc_remote)
    targets = [study.target] if study.target else []
    results, failed = run_tasks(lambda name: submit(name, [*targets, *overrides(sets[name])]), todo, study.retries)
    succeeded = [r["name"] for r in results if r["ok"]]
    if git_remote and succeeded:
        dvc("exp", "pull", *(("--remote", REMOTE) if dvc_remote else ("--no-cache",)), git_remote, *succeeded)
    after()
    if failed:
        raise failure([(n, str(LOGS / f"{n}.log")) for n in failed], len(todo))
    print(
        f"study: {len(succeeded)} experiments succeeded on Ray, {len(done)} were done before; see `dvc exp show`",
        file=sys.stderr,
    )
    return results
