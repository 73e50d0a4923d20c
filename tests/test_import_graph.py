"""No import circle inside any of crank's packages, the worker imports no layer above it
(the runtime lends a task what it needs through ``TaskServices``), and no import runs
back up the layers (the import-linter contract in pyproject.toml).

The graph is read from the source, every ``import`` counted, those inside functions
and under ``if TYPE_CHECKING:`` included: a circle of annotations is still a circle
for a reader. Importing a module runs the ``__init__`` of each package above it, so
an ``__init__`` that imports counts as imported too.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import crank

SRC = Path(crank.__file__).resolve().parent.parent
REPO = Path(__file__).resolve().parents[1]
PACKAGES = sorted(
    f"crank.{p.name}" for p in (SRC / "crank").iterdir() if (p / "__init__.py").is_file()
)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """crank module -> the crank modules it imports (with the packages above them whose
    ``__init__`` imports anything, the importer's own aside)."""
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
    # importing ``a.b.c`` runs ``a/__init__`` and ``a/b/__init__`` first: a package's
    # __init__ that imports is part of every path through it (outside the package)
    for name, imported in graph.items():
        ancestors = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
        for module in list(imported):
            parts = module.split(".")
            packages = {".".join(parts[:i]) for i in range(1, len(parts))}
            imported.update(p for p in packages - ancestors if graph.get(p))
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


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_circle(package: str) -> None:
    graph = import_graph()
    assert "crank.runtime.brokers.contract" in graph["crank.runtime.brokers.memory"]
    assert circles(within(graph, package)) == []


def test_every_package_is_checked() -> None:
    assert {"crank.cli", "crank.generate", "crank.manifest", "crank.testing"} <= set(PACKAGES)


#: the ``lint-imports`` command, run with this interpreter.
LINT_IMPORTS = "import sys; from importlinter.cli import lint_imports_command as c; sys.exit(c())"


NO_CACHE = ("--no-cache",)  # no .import_linter_cache folder in the source tree


def lint_imports(src: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` with the repository's contract, over the crank package in ``src``."""
    return subprocess.run(
        [
            sys.executable,
            "-c",
            LINT_IMPORTS,
            "--config",
            str(REPO / "pyproject.toml"),
            "--no-cache",
        ],
        cwd=src,
        env={"PYTHONPATH": str(src), "PATH": ""},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_no_import_runs_back_up_the_layers() -> None:
    result = lint_imports(SRC)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 1 kept, 0 broken." in result.stdout


def test_an_import_back_up_the_layers_breaks_the_contract(tmp_path: Path) -> None:
    copy = tmp_path / "src"
    shutil.copytree(SRC / "crank", copy / "crank", ignore=shutil.ignore_patterns("__pycache__"))
    lint = copy / "crank" / "manifest" / "lint.py"
    lint.write_text(lint.read_text(encoding="utf-8") + "\nimport crank.cli.group\n")
    result = lint_imports(copy)
    assert result.returncode == 1
    assert "Contracts: 0 kept, 1 broken." in result.stdout
    assert "crank.manifest.lint -> crank.cli.group" in result.stdout


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
