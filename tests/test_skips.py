"""In CI every test dependency is required: no test of this repository may skip there
because something is missing.

Tests ask for what they need through crank's own mechanism (``ensure_dependency`` or
``@pytest.mark.requires``), and every dependency they ask for is declared, by an
example worker's manifest (``crank_manifests``) or by the suite
(``crank_dependencies``), so strict mode (``CI=true``) turns a missing one into a
failure. A bare ``pytest.skip``/``importorskip``/``skipif`` would skip silently in CI.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

from crank.testing.dependencies import check_dependency
from crank.testing.strict import StrictPolicy

REPO = Path(__file__).resolve().parents[1]
#: folders of tests (fixtures are workers and projects under test, not tests)
TEST_FILES = sorted(
    path
    for pattern in ("tests/**/*.py", "plugins/*/tests/**/*.py", "examples/*/tests/**/*.py")
    for path in REPO.glob(pattern)
    if "fixtures" not in path.relative_to(REPO).parts
)
#: skips that fail in CI by their own logic (documented where they are)
ALLOWED_SKIPS = {
    # the example plugin's tests skip outside CI when it is not installed, and run (and
    # fail) when CI=true: it is a project of its own, whose manifest does not declare it
    "examples/crank-plugin-example/tests/conftest.py": "pytest.mark.skip",
}
#: specs a test makes available itself (a stand-in program it writes first)
PROVIDED_BY_THE_TEST = {"exe:odd>=3": "tests/testing/test_checkers.py"}
SKIPS = ("pytest.skip", "pytest.importorskip", "pytest.mark.skip", "pytest.mark.skipif")


def dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{dotted(node.value)}.{node.attr}"
    return ""


def calls(path: Path) -> list[tuple[str, ast.Call | ast.Attribute]]:
    """Every call in ``path`` by its dotted name, and bare skip marks (a decorator,
    ``pytestmark = ...``). Code inside strings (the suites pytester runs) is not seen."""
    found: list[tuple[str, ast.Call | ast.Attribute]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        marks: list[ast.expr] = []
        if isinstance(node, ast.Call):
            found.append((dotted(node.func), node))
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            marks = list(node.decorator_list)
        elif isinstance(node, ast.Assign):
            marks = list(node.value.elts) if isinstance(node.value, ast.List) else [node.value]
        found += [(dotted(m), m) for m in marks if isinstance(m, ast.Attribute)]
    return found


def test_no_test_skips_outside_crank_dependency_checks() -> None:
    offenders = []
    for path in TEST_FILES:
        rel = path.relative_to(REPO).as_posix()
        for name, node in calls(path):
            if name in SKIPS and ALLOWED_SKIPS.get(rel) != name:
                offenders.append(f"{rel}:{node.lineno}: {name}")
    assert offenders == [], "use ensure_dependency or @pytest.mark.requires instead"


class SpecsAsked(ast.NodeVisitor):
    """Literal specs passed to ensure_dependency / requires, except inside
    ``with pytest.raises(...)`` (tests of ensure_dependency itself, on purpose)."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.specs: dict[str, str] = {}

    def visit_With(self, node: ast.With) -> None:
        expecting_failure = any(
            isinstance(item.context_expr, ast.Call)
            and dotted(item.context_expr.func) == "pytest.raises"
            for item in node.items
        )
        if not expecting_failure:
            self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        name = dotted(node.func)
        args = (
            node.args[:1]
            if name.endswith("ensure_dependency")
            else node.args
            if name.endswith("mark.requires")
            else []
        )
        for arg in args:
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                self.specs.setdefault(arg.value, f"{self.where}:{node.lineno}")
        self.generic_visit(node)


def requested_specs() -> dict[str, str]:
    """spec -> where a test asks for it."""
    specs: dict[str, str] = {}
    for path in TEST_FILES:
        visitor = SpecsAsked(path.relative_to(REPO).as_posix())
        visitor.visit(ast.parse(path.read_text(encoding="utf-8"), str(path)))
        for spec, where in visitor.specs.items():
            specs.setdefault(spec, where)
    return specs


@pytest.mark.slow  # checks every dependency the suite asks for
def test_every_dependency_a_test_asks_for_is_required_in_ci() -> None:
    ini = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    options = ini["tool"]["pytest"]["ini_options"]
    policy = StrictPolicy.resolve(
        None,
        {"CI": "true"},
        rootdir=REPO,
        manifest_globs=options["crank_manifests"],
        suite_specs=options["crank_dependencies"],
        suite_file=REPO / "pyproject.toml",
    )
    specs = requested_specs()
    assert {"exe:redis-server", "opentelemetry.sdk", "xdist", "onnxruntime"} <= set(specs)
    not_required = {
        spec: where
        for spec, where in specs.items()
        if policy.requirement(check_dependency(spec)) is None
        and not where.startswith(PROVIDED_BY_THE_TEST.get(spec, "-"))
    }
    assert not_required == {}, "declare them in crank_dependencies (pyproject.toml)"
