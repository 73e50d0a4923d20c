"""The lint engine: rule registration through the hook, per-file disabling, discovery."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

from crank.errors import PluginError, UsageError
from crank.hookspecs import hookimpl
from crank.manifest.lint import Linter, collect_rules, disabled_rules, discover_manifests
from crank.plugins import get_plugin_manager

from .conftest import VALID

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path


@dataclass(frozen=True)
class NoDescriptionRule:
    id: str = "ACME001"
    summary: str = "every capability has a description"

    def check(self, ctx: Any) -> Iterator[Any]:
        for i, cap in enumerate(ctx.data.get("capabilities", [])):
            if "description" not in cap:
                yield ctx.finding(
                    "ACME001",
                    ("capabilities", i),
                    "capability has no description",
                    hint="add `description:`",
                    severity="warning",
                )


class InlinePlugin:
    def __init__(self, *rules: Any) -> None:
        self.rules = rules

    @hookimpl
    def crank_register_lint_rules(self, register: Callable[[Any], None]) -> None:
        for rule in self.rules:
            register(rule)


@pytest.fixture
def register_plugin() -> Iterator[Callable[..., None]]:
    manager = get_plugin_manager()
    names: list[str] = []

    def register(*rules: Any) -> None:
        name = f"inline-{len(names)}"
        manager.register(InlinePlugin(*rules), name=name)
        names.append(name)

    yield register
    for name in names:
        manager.unregister(name)


def test_builtin_rules_are_registered_through_the_hook() -> None:
    ids = [r.id for r in collect_rules()]
    assert ids == [f"CRK{n}" for n in range(101, 113)]
    assert all(r.summary for r in collect_rules())


def test_a_plugin_adds_a_rule(
    register_plugin: Callable[..., None], write_manifest: Callable[..., Path]
) -> None:
    register_plugin(NoDescriptionRule())
    path = write_manifest(VALID)
    findings = Linter(installed_paths=()).lint_file(path)
    assert [(f.rule, f.line, f.col, f.severity, f.json_path) for f in findings] == [
        ("CRK108", 7, 15, "info", "$.worker.entrypoint"),
        ("ACME001", 9, 5, "warning", "$.capabilities[0]"),
    ]


@dataclass(frozen=True)
class CrashingRule:
    id: str = "ACME002"
    summary: str = "crashes"

    def check(self, ctx: Any) -> Iterator[Any]:
        yield from ()
        raise KeyError("boom")


def test_a_crashing_rule_is_a_finding_and_the_others_still_run(
    register_plugin: Callable[..., None], write_manifest: Callable[..., Path]
) -> None:
    register_plugin(CrashingRule(), NoDescriptionRule())
    findings = Linter(installed_paths=()).lint_file(write_manifest(VALID))
    assert [(f.rule, f.line, f.col, f.message, f.hint) for f in findings if f.rule != "CRK108"] == [
        (
            "ACME002",
            1,
            1,
            "rule ACME002 crashed: KeyError: 'boom'",
            "a bug in the rule; skip it with `# crank-lint: disable=ACME002`",
        ),
        ("ACME001", 9, 5, "capability has no description", "add `description:`"),
    ]


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        (object(), "which is not a lint rule"),
        (
            NoDescriptionRule(id="bad"),
            "lint rule id 'bad' is not of the form PREFIX + three digits",
        ),
        (NoDescriptionRule(id="CRK101"), "lint rule id 'CRK101' is registered twice"),
        (NoDescriptionRule(id="CRK002"), "lint rule id 'CRK002' is registered twice"),
    ],
)
def test_bad_rule_registrations_are_named(
    register_plugin: Callable[..., None], rule: Any, message: str
) -> None:
    register_plugin(rule)
    with pytest.raises(PluginError, match=re.escape(message)):
        collect_rules()


def test_disable_comment_parsing() -> None:
    text = "a: 1  # crank-lint: disable=CRK106, crk109\n#crank-lint:disable=ACME001\n"
    assert disabled_rules(text) == {"CRK106", "CRK109", "ACME001"}
    assert disabled_rules("# crank-lint disable=CRK106\n") == frozenset()
    assert disabled_rules("# crank-lint: disable=CRK106 until the 2027 release\n") == {"CRK106"}


def test_disabled_rules_are_not_reported(write_manifest: Callable[..., Path]) -> None:
    text = VALID.replace("version: 2.1.0", "version: 2.1.0\n  key: AKIAABCDEFGHIJKLMNOP")
    path = write_manifest(text)
    assert {f.rule for f in Linter(installed_paths=()).lint_file(path)} == {"CRK002", "CRK109"}
    path.write_text(text + "# crank-lint: disable=CRK109,CRK002\n", encoding="utf-8")
    assert Linter(installed_paths=()).lint_file(path) == []


def test_findings_are_sorted_by_position(write_manifest: Callable[..., Path]) -> None:
    text = VALID.replace("kind: Worker", "kind: Wrker").replace("name: email", "nme: email")
    text += "deprecated:\n  - {id: a.b, replaced_by: [x.y], sunset: 2020-01-01}\n"
    findings = Linter(installed_paths=(), today=dt.date(2026, 1, 1)).lint_file(write_manifest(text))
    positions = [(f.line, f.col) for f in findings]
    assert positions == sorted(positions)
    assert len(findings) >= 4


def test_discovery_finds_manifests_and_skips_tool_dirs(tmp_path: Path) -> None:
    for rel in (
        "crank.yaml",
        "a/crank.yaml",
        "a/b/extra.crank.yaml",
        "a/not-a-manifest.yaml",
        ".git/crank.yaml",
        ".venv/lib/crank.yaml",
        "node_modules/x/crank.yaml",
        "build/crank.yaml",
        ".nox/s/crank.yaml",
        "pkg.egg-info/crank.yaml",
    ):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("a: 1\n")
    found = [p.relative_to(tmp_path).as_posix() for p in discover_manifests([tmp_path])]
    assert found == ["a/b/extra.crank.yaml", "a/crank.yaml", "crank.yaml"]
    # a file named explicitly is linted whatever its name, and only once
    explicit = tmp_path / "a/not-a-manifest.yaml"
    assert discover_manifests([explicit, explicit]) == [explicit]


def test_discovery_usage_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such file or directory"):
        discover_manifests([tmp_path / "missing"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match=re.escape("no crank.yaml or *.crank.yaml found")):
        discover_manifests([tmp_path / "empty"])
