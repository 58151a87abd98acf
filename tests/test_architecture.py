"""The package's shape: no import circles (function-local imports included), small modules, one door to
MLflow (the tracking package) and one to Ray (tune/ and cluster.py). Read from the source with `ast`: no import runs."""
from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import ganpipe

PACKAGE = Path(ganpipe.__file__).parent
MAX_LINES = 350


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> tuple[set[str], set[str]]:
    """(ganpipe modules imported, top-level third-party packages imported), anywhere in the file."""
    inside, outside = set(), set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(up + ([node.module] if node.module else []))
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            if target.split(".")[0] != "ganpipe":
                outside.add(target.split(".")[0])
                continue
            while target and target not in modules:  # `from ganpipe.x import func` imports module ganpipe.x
                target = target.rpartition(".")[0]
            if target and target != name:
                inside.add(target)
    return inside, outside


def _graph():
    modules = _modules()
    graph, external = {}, defaultdict(set)
    for name, path in modules.items():
        graph[name], outside = _imports(name, path, modules)
        for package in outside:
            external[package].add(name)
    return graph, external


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), plus self-loops."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_import_circles():
    graph, _ = _graph()
    # a package's __init__ re-exporting its own modules is not a circle of concerns unless a module imports it back
    assert _cycles(graph) == []


def test_only_tracking_imports_mlflow():
    _, external = _graph()
    assert external["mlflow"] and all(m.split(".")[:2] == ["ganpipe", "tracking"] for m in external["mlflow"]), \
        sorted(external["mlflow"])


def test_only_tune_and_cluster_import_ray():
    _, external = _graph()
    allowed = [m for m in external["ray"] if m == "ganpipe.cluster" or m.startswith("ganpipe.tune")]
    assert sorted(external["ray"]) == sorted(allowed)


def test_no_module_over_350_lines():
    long = {str(p.relative_to(PACKAGE.parent)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_the_train_loop_imports_neither_ray_nor_mlflow():
    graph, external = _graph()
    train = {m for m in graph if m.startswith("ganpipe.train")}
    assert not train & (external["ray"] | external["mlflow"])
