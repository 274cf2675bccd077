"""dvc.yaml against the code: every project file a stage's entry module reaches is a dep of that stage.

Imports are followed with `ast` (module level and inside functions), through `from package import
module` too, so the check also holds for stages added later: DVC reruns a stage when a file it
lists changes, and a file it reaches but does not list could change its results unseen.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"

# Files that cannot change a stage's outputs, so editing them must not rerun Stable Diffusion:
# - the params package (every module of diffaug/params/): schema only; a stage gets values from it, never a count
#   (those live in rules.py, which the stages that count list). Its verdicts are the `check` stage's, which lists
#   all its modules and what they import. Other stages do not follow its imports: its checks are not their code.
# - io.py: atomic writes and the JSON/CSV formats (the bytes a stage writes are its own values);
# - errors.py: the error type; cli.py: the command-line frame (exit code and the "done" line);
# - progress.py: progress bars and the third-party libraries' log level (what is printed, not computed);
# - paths.py: where outputs go, not what they hold; a path must change in dvc.yaml too (test_paths.py), and a
#   changed dvc.yaml path reruns the stage;
# - package __init__ files: docstrings.
PARAMS = "diffaug/params/"
EXEMPT = {"diffaug/io.py", "diffaug/errors.py", "diffaug/cli.py", "diffaug/progress.py", "diffaug/paths.py"}
CHECK = "diffaug.stages.check"  # the one stage whose result is the params package's verdict
PARAMS_FILES = sorted(p.relative_to(SRC).as_posix() for p in (SRC / PARAMS).glob("*.py"))


def exempt(file: str) -> bool:
    return file in EXEMPT or file.startswith(PARAMS)


def module_file(name: str) -> Path | None:
    base = SRC / Path(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imports_of(path: Path) -> set[str]:
    """Project modules imported anywhere in `path` (absolute `diffaug...` imports; the project uses no others)."""
    names = set()
    tree = ast.parse(path.read_text())
    for block in [n for n in ast.walk(tree) if isinstance(n, ast.If) and ast.unparse(n.test) == "TYPE_CHECKING"]:
        block.body = []  # imports for type annotations only: never run
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names if a.name.startswith("diffaug")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("diffaug"):
            assert node.level == 0, f"{path}: relative import"
            names.add(node.module)
            # `from diffaug.x import y` imports the module diffaug.x.y when y is one
            names |= {f"{node.module}.{a.name}" for a in node.names if module_file(f"{node.module}.{a.name}")}
    # A package's modules need its __init__ (and the parents') loaded first.
    return {".".join(n.split(".")[:i]) for n in names for i in range(1, n.count(".") + 2)}


def closure(module: str) -> set[str]:
    """Files (relative to src/) reached from `module`, itself included; an exempt file's own imports
    are followed for the `check` stage only."""
    seen, todo = set(), [module]
    while todo:
        path = module_file(todo.pop())
        if path is None or path in seen:
            continue
        seen.add(path)
        if module == CHECK or not exempt(path.relative_to(SRC).as_posix()):
            todo += imports_of(path)
    return {p.relative_to(SRC).as_posix() for p in seen}


def import_graph() -> dict[str, set[str]]:
    graph = {}
    for path in sorted((SRC / "diffaug").rglob("*.py")):
        name = ".".join(path.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")
        graph[name] = {
            n
            for n in imports_of(path)
            if n != name
            and not n.startswith(name + ".")
            and module_file(n)
            and not module_file(n).name == "__init__.py"
        }
    return graph


def stages() -> dict:
    """dvc.yaml's stages as DVC resolves them (matrix, foreach and ${} filled in from params.yaml)."""
    from dvc.repo import Repo

    with Repo(str(REPO)) as repo:
        return {s.addressing: s for s in repo.index.stages}


def entry_module(cmd: str) -> str | None:
    m = re.search(r"-m (diffaug\.stages\.\w+)", cmd)
    return m.group(1) if m else None


def test_every_file_a_stage_imports_is_a_dep():
    missing = {}
    for name, stage in stages().items():
        module = entry_module(stage.cmd)
        assert module, f"stage {name} does not run a diffaug.stages module: {stage.cmd}"
        deps = {d.def_path for d in stage.deps}
        needed = {f"src/{f}" for f in closure(module) if not exempt(f) and not f.endswith("__init__.py")}
        if needed - deps:
            missing[name] = sorted(needed - deps)
    assert not missing, f"stages reach files they do not list as deps: {missing}"


def test_a_stage_runs_the_module_of_its_name():
    """`generate_finetuned@dreambooth` runs diffaug.stages.generate_finetuned, so a stage's code is found by its
    name; the measure_<kind> groups (one per kind of source: DVC cannot join the kinds' lists) share `measure`."""
    wrong = {}
    for name, stage in stages().items():
        group = re.sub(r"^measure_\w+$", "measure", name.split("@")[0])
        if entry_module(stage.cmd) != f"diffaug.stages.{group}":
            wrong[name] = entry_module(stage.cmd)
    assert not wrong, f"stages whose module is not named after them: {wrong}"


def test_every_listed_code_dep_is_reached():
    """The other direction: a listed module the stage never imports reruns it for nothing."""
    extra = {}
    for name, stage in stages().items():
        reached = {f"src/{f}" for f in closure(entry_module(stage.cmd))}
        listed = {d.def_path for d in stage.deps if d.def_path.startswith("src/")}
        if listed - reached:
            extra[name] = sorted(listed - reached)
    assert not extra, f"stages list code they never import: {extra}"


def test_the_params_package_is_a_dep_of_the_check_stage_only():
    params_deps = {f"src/{f}" for f in PARAMS_FILES}
    for name, stage in stages().items():
        listed = {d.def_path for d in stage.deps}
        if name == "check":
            assert params_deps <= listed, sorted(params_deps - listed)
        else:
            assert not params_deps & listed, (name, sorted(params_deps & listed))
            assert "params.checked" in listed, f"{name} does not wait for the params check"


def test_the_import_graph_has_no_cycle():
    graph = import_graph()
    state: dict[str, int] = {}

    def visit(node, path):
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                pytest.fail(
                    "import cycle: " + " -> ".join(path[path.index(nxt) :] + [nxt])
                    if nxt in path
                    else f"import cycle through {nxt}"
                )
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])


def test_the_params_package_imports_nothing_from_the_project_but_the_rules_and_the_error_type():
    for file in PARAMS_FILES:
        outside = {n for n in imports_of(SRC / file) if n != "diffaug.params" and not n.startswith("diffaug.params.")}
        assert outside <= {"diffaug", "diffaug.errors", "diffaug.rules"}, (file, outside)


def test_no_stage_counts_through_the_params_models():
    """The blind spot this file closes: a function defined in the params package that computes a stage's
    output would change it without rerunning the stage. Its modules define schema and checks only."""
    top = [node for file in PARAMS_FILES for node in ast.parse((SRC / file).read_text()).body]
    functions = {n.name for n in top if isinstance(n, ast.FunctionDef) and not n.name.startswith("_")}
    assert functions <= {"load_params", "parse_params", "params_table"}, functions
    names = functions | {n.name for n in top if isinstance(n, ast.ClassDef)}
    names |= {t.id for n in top if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)}
    for path in sorted((SRC / "diffaug").rglob("*.py")):
        if path.relative_to(SRC).as_posix().startswith(PARAMS):
            continue  # the package's own modules share its checks
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("diffaug.params"):
                imported = {a.name for a in node.names}
                assert imported <= names, (path, imported - names)


def test_editing_a_counting_rule_makes_dvc_rerun_the_stages_it_shapes(tmp_path):
    """In a scratch copy of the pipeline, change how `mix` counts: `dvc status` must report `mix` (and
    the other stages that count) changed, and not the classifier, which does not count."""
    import shutil
    import subprocess

    for name in ("dvc.yaml", "dvc.lock", "params.yaml"):
        shutil.copy(REPO / name, tmp_path / name)
    shutil.copytree(REPO / "src", tmp_path / "src", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "data/input").mkdir(parents=True)
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run(["dvc", "init", "-q"], cwd=tmp_path, check=True)

    def changed_rules() -> set[str]:
        out = subprocess.run(["dvc", "status", "--json"], cwd=tmp_path, capture_output=True, text=True, check=True)
        status = json.loads(out.stdout)
        return {
            stage
            for stage, changes in status.items()
            for c in changes
            if isinstance(c, dict) and "src/diffaug/rules.py" in c.get("changed deps", {})
        }

    assert changed_rules() == set()  # dvc.lock holds the rules as they are
    rules = tmp_path / "src/diffaug/rules.py"
    rules.write_text(
        rules.read_text().replace("synthetic = round_half_up(p * n)", "synthetic = round_half_up(p * n) + 0")
    )
    assert {"mix", "split", "reference", "generate@vanilla", "check"} <= changed_rules()
    assert not {"train", "evaluate", "base_model"} & changed_rules()
