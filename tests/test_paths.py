"""diffaug/paths.py against dvc.yaml: the paths the code writes are the outputs DVC declares, and the reverse.

A stage that writes a file dvc.yaml does not declare leaves it out of the cache and out of `dvc status`; an output
dvc.yaml declares that no code writes fails the stage after it ran. Both are caught here, without running DVC.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import yaml

from diffaug import paths

REPO = Path(__file__).resolve().parents[1]
X = "${key}"  # what a per-source or per-class name looks like in dvc.yaml


def declared() -> dict[str, set[str]]:
    """Each stage's outs, metrics and plots, as written in dvc.yaml (`${item.class}` read as `${key}`)."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    found: dict[str, set[str]] = {}
    for name, stage in stages.items():
        body = stage.get("do", stage)
        entries = [e for kind in ("outs", "metrics", "plots") for e in body.get(kind, [])]
        found[name] = {(e if isinstance(e, str) else next(iter(e))).replace("${item.class}", X) for e in entries}
    return found


def every_out() -> set[str]:
    return set().union(*declared().values())


def test_every_named_path_is_a_declared_output():
    outs = every_out()
    constants = {k: v.as_posix() for k, v in vars(paths).items() if isinstance(v, Path)}
    # Folders of per-source and per-stage outputs; DVCLive writes metrics.json and plots/ into TRAIN_CURVES.
    roots = {"SYNTHETIC", "SAMPLES", "METRICS", "TRAIN_CURVES"}
    for name, path in constants.items():
        if name in roots:
            assert any(o.startswith(path + "/") for o in outs), (name, path)
        else:
            assert path in outs, f"paths.{name} = {path} is no stage's output in dvc.yaml"


def test_per_source_and_per_class_outputs_are_built_as_dvc_yaml_declares_them():
    stages = declared()
    for stage in ("generate", "generate_finetuned", "img2img", "filter", "real"):
        assert {paths.synthetic(X).as_posix(), paths.samples(X).as_posix()} <= stages[stage], stage
    for method in ("dreambooth", "textual_inversion"):
        assert paths.finetuned(method, X).as_posix() in stages[f"train_{method}"]
        assert paths.metrics(f"{method}/{X}").as_posix() in stages[f"train_{method}"]
    assert paths.samples("original").as_posix() in stages["fid_reference"]


def _written_metrics(tree: ast.AST) -> set[str]:
    """The names passed to paths.metrics(...) in a module: a literal, or an f-string whose fields become `${key}`."""
    names = set()
    for node in ast.walk(tree):
        func = getattr(node, "func", None)
        called = getattr(func, "id", getattr(func, "attr", ""))
        if not (isinstance(node, ast.Call) and node.args and called == "metrics"):
            continue
        arg = node.args[0]
        if isinstance(arg, ast.Constant):
            names.add(arg.value)
        elif isinstance(arg, ast.JoinedStr):
            names.add("".join(v.value if isinstance(v, ast.Constant) else X for v in arg.values))
    return names


def test_every_metrics_file_the_code_writes_is_declared():
    outs = every_out()
    written = set()
    for path in (REPO / "src/diffaug").rglob("*.py"):
        written |= {paths.metrics(n).as_posix() for n in _written_metrics(ast.parse(path.read_text()))}
    written.add((paths.TRAIN_CURVES / "metrics.json").as_posix())  # DVCLive's summary in the curves' folder
    assert len(written) >= 12  # each stage's metrics: the scan reads the calls
    assert written - outs == set(), "metrics written but not declared in dvc.yaml"
    declared_metrics = {o for o in outs if o.startswith("metrics/") and o.endswith(".json")}
    assert declared_metrics - written == set(), "metrics declared in dvc.yaml that no code writes"


def test_the_code_names_no_pipeline_path_but_through_paths():
    pattern = re.compile(r"""["'](data|models|metrics|plots)/""")
    offenders = []
    for path in sorted((REPO / "src/diffaug").rglob("*.py")):
        if path.name == "paths.py":
            continue
        tree = ast.parse(path.read_text())
        docstrings = {
            id(n.body[0].value)
            for n in ast.walk(tree)
            if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef)) and n.body and isinstance(n.body[0], ast.Expr)
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                if pattern.search(repr(node.value)):
                    offenders.append(f"{path.relative_to(REPO)}:{node.lineno} {node.value[:60]!r}")
    assert offenders == []
