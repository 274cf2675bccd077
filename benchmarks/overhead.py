"""Where one experiment's wall time goes: DVC's own work, each stage process's start and imports, and the work.

    python benchmarks/overhead.py --variant before=740adcc:pure --variant after=HEAD [--queue] [--repeat 2]

A variant is `label=revision`, with `:pure` to make DVC parse YAML in pure Python (as it does without
ruamel.yaml.clib installed) and `:target` to run the experiment as the study does now (`dvc exp run evaluate`:
DVC checks out and checks only evaluate's upstream). Each revision runs in a scratch clone whose DVC cache is
this repository's, so the clone's outputs are links (`dvc checkout`) and its `dvc status` must be clean.
Per variant, repeated and interleaved with the other variants so that drift hits all alike:
- `dvc exp run -S mix.p=0.5` (a fresh `mix.seed` each time, so the run-cache restores nothing): its wall time,
  and each stage process's wall time (a `python` shim on PATH logs them). A stage process is split into start
  and imports (`python -c "import diffaug.stages.<stage>"`, timed alone) and work (the rest). DVC's own share is
  the wall time minus the stage processes: collecting the pipeline, status, output hashing, dvc.lock writes and
  the experiment's git refs.
- with --queue, the same experiment through `dvc exp run --queue` and `dvc queue start -j 1`: the queue's extra
  cost is the temporary workspace's checkout, the worker's start and the cleanup.
- the no-op `dvc repro` (everything up to date) and the start and imports of every stage process of the
  built-in default `dvc repro`: the fixed cost of a full run beside its stages' work.
The fixed cost of an experiment is its wall time minus the work of `train` and `evaluate`. Prints markdown tables
and writes them with the raw timings to --out (JSON). Run it on a quiet machine: two cores shared with anything
else make every number larger.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
SHIM = """#!/bin/sh
s=$(date +%s.%N); "{python}" "$@"; rc=$?; e=$(date +%s.%N)
echo "$s $e $rc $*" >> "$OVERHEAD_LOG"; exit $rc
"""
# Without the C parser, ruamel.yaml (DVC's YAML library) falls back to its pure-Python one.
PURE_YAML = 'import sys\nsys.modules["_ruamel_yaml"] = None\nsys.modules["_ruamel_yaml_clibz"] = None\n'
EXPERIMENT = ("check", "mix", "train", "evaluate")


def sh(*cmd: str, cwd: Path, env: dict | None = None) -> float:
    """Run `cmd`, fail loudly, return its wall time in seconds."""
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"{' '.join(cmd)} failed in {cwd}:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return time.perf_counter() - start


class Variant:
    def __init__(self, spec: str, scratch: Path):
        self.label, _, rest = spec.partition("=")
        self.rev, *modes = rest.split(":")
        self.pure, self.target = "pure" in modes, ["evaluate"] if "target" in modes else []
        commit = subprocess.run(["git", "rev-parse", self.rev], cwd=HERE, capture_output=True, text=True, check=True)
        self.commit = commit.stdout.strip()
        self.repo = scratch / self.commit[:10]
        self.tools = scratch / f"tools-{self.label}"
        self.log = scratch / f"stages-{self.label}.log"
        self.timings: dict[str, list] = {"experiment": [], "queue": [], "status": [], "noop_repro": []}

    def env(self) -> dict:
        env = dict(os.environ, PATH=f"{self.tools}{os.pathsep}{os.environ['PATH']}", OVERHEAD_LOG=str(self.log))
        env.pop("PYTHONPATH", None)
        if self.pure:
            env["PYTHONPATH"] = str(self.tools / "site")
        return env

    def prepare(self) -> None:
        (self.tools / "site").mkdir(parents=True, exist_ok=True)
        (self.tools / "python").write_text(SHIM.format(python=sys.executable))
        (self.tools / "python").chmod(0o755)
        (self.tools / "site" / "sitecustomize.py").write_text(PURE_YAML if self.pure else "")
        if not self.repo.exists():
            sh("git", "clone", "-q", str(HERE), str(self.repo), cwd=HERE)
            sh("git", "checkout", "-q", self.commit, cwd=self.repo)
            sh("dvc", "cache", "dir", "--local", str(HERE / ".dvc" / "cache"), cwd=self.repo)
        sh("git", "reset", "-q", "--hard", self.commit, cwd=self.repo)
        # An output this cache lacks (an older revision's, e.g. its `check` marker) is made once by its stage;
        # where outputs are byte-identical across revisions, nothing downstream reruns.
        if subprocess.run(["dvc", "checkout", "-q", "-f"], cwd=self.repo, capture_output=True).returncode:
            sh("dvc", "repro", "-q", cwd=self.repo, env=self.env())
            sh("git", "reset", "-q", "--hard", self.commit, cwd=self.repo)  # the repro's lock and metrics
        status = subprocess.run(["dvc", "status", "--json"], cwd=self.repo, capture_output=True, text=True)
        if json.loads(status.stdout or "{}"):
            sys.exit(f"{self.label}: `dvc status` in {self.repo} is not clean; run `dvc repro` at {self.rev} first.")

    def stage_walls(self, since: int) -> list[tuple[str, float]]:
        """(stage module, wall seconds) of the stage processes logged after line `since`."""
        lines = self.log.read_text().splitlines()[since:] if self.log.exists() else []
        walls = []
        for line in lines:
            start, end, _rc, *args = line.split()
            module = next((a for a in args if a.startswith("diffaug.stages.")), None)
            if module:
                walls.append((module.removeprefix("diffaug.stages."), float(end) - float(start)))
        return walls

    def logged(self) -> int:
        return len(self.log.read_text().splitlines()) if self.log.exists() else 0

    def experiment(self) -> None:
        since, seed = self.logged(), f"mix.seed={uuid.uuid4().int % 10**6 + 1000}"
        wall = sh("dvc", "exp", "run", *self.target, "-S", "mix.p=0.5", "-S", seed, cwd=self.repo, env=self.env())
        self.timings["experiment"].append({"wall": wall, "stages": self.stage_walls(since)})
        sh("git", "reset", "-q", "--hard", self.commit, cwd=self.repo)
        sh("dvc", "checkout", "-q", "-f", cwd=self.repo)

    def queued(self) -> None:
        since, seed, name = self.logged(), f"mix.seed={uuid.uuid4().int % 10**6 + 1000}", f"ovh-{uuid.uuid4().hex[:8]}"
        args = ["--queue", "-n", name, *self.target, "-S", "mix.p=0.5", "-S", seed]
        sh("dvc", "exp", "run", *args, cwd=self.repo, env=self.env())
        start = time.perf_counter()
        sh("dvc", "queue", "start", "-j", "1", cwd=self.repo, env=self.env())
        sh("dvc", "queue", "logs", "-f", name, cwd=self.repo, env=self.env())
        result = time.perf_counter() - start
        # The worker leaves by itself once the queue is empty, after removing the experiment's workspace.
        while time.perf_counter() - start < result + 300 and worker_running(self.repo):
            time.sleep(0.2)
        wall = time.perf_counter() - start
        stages = self.stage_walls(since)
        self.timings["queue"].append({"wall": wall, "result": result, "stages": stages})
        sh("git", "reset", "-q", "--hard", self.commit, cwd=self.repo)

    def quiet_commands(self) -> None:
        self.timings["status"].append(sh("dvc", "status", "-q", cwd=self.repo, env=self.env()))
        self.timings["noop_repro"].append(sh("dvc", "repro", "-q", cwd=self.repo, env=self.env()))


def worker_running(repo: Path) -> bool:
    found = subprocess.run(["pgrep", "-f", "exp queue-worker"], capture_output=True, text=True).stdout.split()
    return any(Path(f"/proc/{pid}/cwd").resolve() == repo.resolve() for pid in found if Path(f"/proc/{pid}").exists())


def import_seconds(repo: Path, modules: set[str], repeat: int) -> dict[str, float]:
    """Each stage module's process start and imports, timed alone (median of `repeat`)."""
    env = dict(os.environ, PYTHONPATH="src")
    return {
        m: statistics.median(
            sh(sys.executable, "-c", f"import diffaug.stages.{m}", cwd=repo, env=env) for _ in range(repeat)
        )
        for m in sorted(modules)
    }


def repro_modules(repo: Path) -> list[str]:
    """The stage module of each stage process the built-in default `dvc repro` runs."""
    code = (
        "from dvc.repo import Repo\nimport re\nwith Repo('.') as r:\n"
        "    for s in r.index.stages:\n"
        "        m = re.search(r'-m diffaug\\.stages\\.(\\w+)', s.cmd or '')\n"
        "        print(m.group(1) if m else '')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, check=True)
    return [m for m in out.stdout.split() if m]


def phases(runs: list[dict], imports: dict[str, float]) -> dict[str, float]:
    """Median seconds of each phase over `runs` (an experiment's stage processes and the rest)."""
    rows: dict[str, list[float]] = {}
    for run in runs:
        row = {"total": run["wall"], "DVC (status, hashing, dvc.lock, git refs)": run["wall"]}
        for stage, wall in run["stages"]:
            start = min(imports.get(stage, 0.0), wall)
            row[f"{stage}: start and imports"] = row.get(f"{stage}: start and imports", 0.0) + start
            row[f"{stage}: work"] = row.get(f"{stage}: work", 0.0) + wall - start
            row["DVC (status, hashing, dvc.lock, git refs)"] -= wall
        row["fixed cost (total - train and evaluate work)"] = (
            run["wall"] - row.get("train: work", 0.0) - row.get("evaluate: work", 0.0)
        )
        for key, value in row.items():
            rows.setdefault(key, []).append(value)
    return {key: statistics.median(values) for key, values in rows.items()}


def table(title: str, columns: dict[str, dict[str, float]]) -> str:
    labels = list(columns)
    keys = list(dict.fromkeys(k for col in columns.values() for k in col))
    head = f"| {title} | " + " | ".join(f"{label} s | share" for label in labels) + " |"
    lines = [head, "|---|" + "---:|---:|" * len(labels)]
    for key in keys:
        cells = []
        for label in labels:
            value, total = columns[label].get(key), columns[label].get("total")
            cells += ["", ""] if value is None else [f"{value:.1f}", f"{value / total:.0%}" if total else ""]
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--variant", action="append", required=True, help="label=revision[:pure]")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--queue", action="store_true", help="also time the experiment through DVC's queue")
    ap.add_argument("--scratch", type=Path, default=Path("/tmp/diffaug-overhead"))
    ap.add_argument("--out", type=Path, default=Path("overhead.json"))
    a = ap.parse_args()
    a.scratch.mkdir(parents=True, exist_ok=True)
    variants = [Variant(spec, a.scratch) for spec in a.variant]
    for v in variants:
        v.prepare()
    for _ in range(a.repeat):
        for v in variants:
            v.quiet_commands()
            v.experiment()
            if a.queue:
                v.queued()
    report, results = [], {}
    for v in variants:
        modules = repro_modules(v.repo)
        imports = import_seconds(v.repo, set(modules) | set(EXPERIMENT), a.repeat + 1)
        results[v.label] = {
            "rev": v.commit,
            "pure_yaml": v.pure,
            "queue_target": v.target,
            "imports": imports,
            "experiment": phases(v.timings["experiment"], imports),
            "queue": phases(v.timings["queue"], imports) if a.queue else None,
            "repro": {
                "no-op dvc repro (status of every stage)": statistics.median(v.timings["noop_repro"]),
                "dvc status": statistics.median(v.timings["status"]),
                f"start and imports of its {len(modules)} stage processes": sum(imports[m] for m in modules),
            },
            "raw": v.timings,
        }
    report.append(table("dvc exp run -S mix.p=0.5", {k: r["experiment"] for k, r in results.items()}))
    if a.queue:
        report.append(table("the same experiment, queued", {k: r["queue"] for k, r in results.items()}))
    report.append(table("fixed cost of the built-in dvc repro", {k: r["repro"] for k, r in results.items()}))
    report.append(table("stage process start and imports", {k: r["imports"] for k, r in results.items()}))
    print("\n\n".join(report))
    a.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
