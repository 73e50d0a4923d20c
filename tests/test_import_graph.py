"""The runtime and the worker layer have no import circle, and the worker imports no layer
above it (the runtime lends a task what it needs through ``TaskServices``).

The graph is read from the source, every ``import`` counted, those inside functions
and under ``if TYPE_CHECKING:`` included: a circle of annotations is still a circle
for a reader.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import crank

SRC = Path(crank.__file__).resolve().parent.parent


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """crank module -> the crank modules it imports (implicit parent packages aside)."""
    files = {_module_name(p): p for p in (SRC / "crank").rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in files}
    for name, path in files.items():
        here = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                graph[name].update(alias.name for alias in node.names if alias.name in files)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = here.split(".")[: len(here.split(".")) - node.level + 1]
                    base = ".".join([*parent, base] if base else parent)
                # ``from pkg import module`` imports the module; ``from module import x``
                # (or a name of a package's __init__) imports that module
                named = [f"{base}.{alias.name}" for alias in node.names]
                modules = {n for n in named if n in files}
                if len(modules) < len(named) and base in files:
                    modules.add(base)
                graph[name].update(modules)
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_graph_sees_a_circle() -> None:
    # the check itself: a circle of three is found, a chain is not
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert circles(graph) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": set()}) == []


def within(graph: dict[str, set[str]], package: str) -> dict[str, set[str]]:
    inside = {m for m in graph if m == package or m.startswith(f"{package}.")}
    return {m: graph[m] & inside for m in inside}


@pytest.mark.parametrize("package", ["crank.runtime", "crank.worker"])
def test_no_import_circle(package: str) -> None:
    graph = import_graph()
    assert "crank.runtime.brokers.contract" in graph["crank.runtime.brokers.memory"]
    assert circles(within(graph, package)) == []


def test_the_worker_layer_imports_nothing_above_it() -> None:
    above = ("crank.runtime", "crank.testing", "crank.generate", "crank.cli")
    graph = import_graph()
    assert "crank.worker.outbound_calls" in graph["crank.worker.context"]
    wrong = {
        module: sorted(t for t in targets if t.startswith(above))
        for module, targets in within(graph, "crank.worker").items()
        if any(t.startswith(above) for t in targets)
    }
    assert wrong == {}
