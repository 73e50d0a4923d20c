"""The lint engine: rule registration through the hook, per-file disabling, discovery."""

from __future__ import annotations

import datetime as dt
import re
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest
from click.testing import CliRunner

from crank.cli import cli
from crank.cli.lint import collect_rules
from crank.errors import UsageError
from crank.hookspecs import hookimpl
from crank.manifest.lint import Linter, disabled_rules, discover_manifests
from crank.plugins import PluginLoadWarning, get_plugin_manager

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
    # crank's own, in order (an installed plugin may add rules of its own prefix)
    assert [i for i in ids if i.startswith("CRK")] == [f"CRK{n}" for n in range(101, 118)]
    assert all(r.summary for r in collect_rules())


def test_a_plugin_adds_a_rule(
    register_plugin: Callable[..., None], write_manifest: Callable[..., Path]
) -> None:
    register_plugin(NoDescriptionRule())
    path = write_manifest(VALID)
    findings = Linter(collect_rules(), installed_paths=()).lint_file(path)
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
    findings = Linter(collect_rules(), installed_paths=()).lint_file(write_manifest(VALID))
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


@dataclass(frozen=True)
class StringRule:
    id: str = "ACME003"
    summary: str = "yields text, not findings"

    def check(self, ctx: Any) -> Iterator[Any]:
        yield "capability has no description"


def test_a_rule_that_yields_no_finding_is_a_finding_naming_it(
    register_plugin: Callable[..., None], write_manifest: Callable[..., Path]
) -> None:
    register_plugin(StringRule(), NoDescriptionRule())
    findings = Linter(collect_rules(), installed_paths=()).lint_file(write_manifest(VALID))
    assert [(f.rule, f.message, f.severity) for f in findings if f.rule != "CRK108"] == [
        (
            "ACME003",
            "rule ACME003 produced 'capability has no description', which is not a Finding",
            "error",
        ),
        ("ACME001", "capability has no description", "warning"),
    ]


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        (object(), "registered an unusable lint rule, which was skipped: "),
        (
            NoDescriptionRule(id="bad"),
            "registered an unusable lint rule, which was skipped: "
            "lint rule id 'bad' is not of the form PREFIX + three digits",
        ),
        (
            NoDescriptionRule(id="CRK101"),
            "registered lint rule id 'CRK101', which was skipped: lint rule id 'CRK101' is "
            "registered twice ('crank.manifest.rules' registered it first)",
        ),
        (
            NoDescriptionRule(id="CRK900"),
            "registered an unusable lint rule, which was skipped: lint rule id 'CRK900' starts "
            "with CRK, which only crank's own lint rules use",
        ),
        (
            NoDescriptionRule(id="CRK002"),
            "registered lint rule id 'CRK002', which was skipped: lint rule id 'CRK002' is "
            "registered twice ('crank' registered it first)",
        ),
    ],
)
def test_bad_rule_registrations_are_named_and_skipped(
    register_plugin: Callable[..., None], rule: Any, message: str
) -> None:
    register_plugin(rule)
    with pytest.warns(PluginLoadWarning) as caught:
        rules = collect_rules()
    assert len(caught) == 1
    assert str(caught[0].message).startswith(f"crank plugin 'inline-0' {message}")
    if rule.__class__ is object:
        assert str(caught[0].message).endswith(", which is not a lint rule")
    # the bad registration is skipped, crank's own rules are all there and unchanged
    assert rule not in rules
    assert [r.id for r in rules if r.id.startswith("CRK")] == [f"CRK{n}" for n in range(101, 118)]
    assert all(r.summary != "every capability has a description" for r in rules)
    (problem,) = get_plugin_manager().problems("inline-0")
    assert (problem.hook, str(problem)) == ("crank_register_lint_rules", str(caught[0].message))
    # warned once: gathering again records the problem without a second warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        collect_rules()
    assert get_plugin_manager().problems("inline-0") == (problem,)


def test_disable_comment_parsing() -> None:
    text = "a: 1  # crank-lint: disable=CRK106, crk109\n#crank-lint:disable=ACME001\n"
    assert disabled_rules(text) == {"CRK106", "CRK109", "ACME001"}
    assert disabled_rules("# crank-lint disable=CRK106\n") == frozenset()
    assert disabled_rules("# crank-lint: disable=CRK106 until the 2027 release\n") == {"CRK106"}
    assert disabled_rules('a: "# crank-lint: disable=CRK106"  # crank-lint: disable=CRK109\n') == {
        "CRK109"
    }
    # text that is not YAML: the comments before the error still count, and all after it
    assert disabled_rules('a: "# crank-lint: disable=CRK106\n') == {"CRK106"}


def test_disabled_rules_are_not_reported(write_manifest: Callable[..., Path]) -> None:
    text = VALID.replace("version: 2.1.0", "version: 2.1.0\n  key: AKIAABCDEFGHIJKLMNOP")
    path = write_manifest(text)
    assert {f.rule for f in Linter(collect_rules(), installed_paths=()).lint_file(path)} == {
        "CRK002",
        "CRK109",
    }
    path.write_text(text + "# crank-lint: disable=CRK109\n", encoding="utf-8")
    assert {f.rule for f in Linter(collect_rules(), installed_paths=()).lint_file(path)} == {
        "CRK002"
    }


def test_a_disable_comment_that_turns_no_rule_off_is_a_warning_where_it_is_written(
    write_manifest: Callable[..., Path],
) -> None:
    """`disable=CRK10` (a typo) was silent and turned off nothing, not even the CRK109 named
    beside it; a comment without its colon was as silent."""
    text = VALID.replace("version: 2.1.0", "version: 2.1.0\n  description: AKIAABCDEFGHIJKLMNOP")
    path = write_manifest(
        text
        + "# crank-lint: disable=CRK10, crk109,CRK108 until 2027\n"
        + "# crank-lint disable=CRK106\n"
    )
    result = CliRunner().invoke(cli, ["lint", "--strict", str(path)])
    assert result.exit_code == 1
    line = len(text.splitlines()) + 1
    assert result.stdout.splitlines()[-5:] == [
        f"{path}:{line}:23 CRK001 warning: `crank-lint: disable=` names CRK10, which is not the "
        "id of any lint rule (did you mean CRK110?) [$]",
        "    hint: fix the id (each finding of `crank lint` names its rule), or install the "
        "plugin that registers the rule",
        f"{path}:{line + 1}:1 CRK001 warning: '# crank-lint disable=CRK106' turns no rule off [$]",
        "    hint: write it `# crank-lint: disable=ID,ID` (a colon after crank-lint, the ids "
        "after `disable=`)",
        "0 errors, 2 warnings in 1 file",
    ]
    assert "CRK109" not in result.stdout
    # a plugin's rule is known while the plugin is installed
    path.write_text(VALID + "# crank-lint: disable=CRK109,CRK108\n", encoding="utf-8")
    assert Linter(collect_rules(), installed_paths=()).lint_file(path) == []


@pytest.mark.parametrize(
    "value",
    [
        '"AKIAABCDEFGHIJKLMNOP # crank-lint: disable=CRK109"',
        "'AKIAABCDEFGHIJKLMNOP # crank-lint: disable=CRK109'",
        "|\n    AKIAABCDEFGHIJKLMNOP\n    # crank-lint: disable=CRK109",
        "AKIAABCDEFGHIJKLMNOP#crank-lint:disable=CRK109",
    ],
    ids=["double-quoted", "single-quoted", "block", "plain"],
)
def test_a_disable_comment_inside_a_value_turns_nothing_off(
    write_manifest: Callable[..., Path], value: str
) -> None:
    """Words inside a description turned CRK109 off as a comment would have."""
    text = VALID.replace("version: 2.1.0", f"version: 2.1.0\n  description: {value}")
    path = write_manifest(text)

    def found() -> list[tuple[str, str]]:
        findings = Linter(collect_rules(), installed_paths=()).lint_file(path)
        # CRK108: a note that the entrypoint's module is not installed
        return [(f.rule, f.message) for f in findings if f.rule != "CRK108"]

    assert found() == [("CRK109", "value looks like an AWS access key id")]
    # malformed, it is not reported as a comment that turns nothing off either
    path.write_text(text.replace("crank-lint:", "crank-lint "), encoding="utf-8")
    assert found() == [("CRK109", "value looks like an AWS access key id")]
    # a real comment after the same value still turns the rule off
    path.write_text(text + "# crank-lint: disable=CRK109\n", encoding="utf-8")
    assert found() == []


def test_a_schema_error_cannot_be_disabled(write_manifest: Callable[..., Path]) -> None:
    """crank run refuses the manifest whatever the comment says: lint must not call it
    clean. A CRK001 warning (an unquoted octal number) can still be turned off."""
    text = VALID.replace("version: 2.1.0", "version: 2.1.0\n  key: 010")
    path = write_manifest(text + "# crank-lint: disable=CRK002,CRK001\n")
    result = CliRunner().invoke(cli, ["lint", str(path)])
    assert result.exit_code == 1
    assert f"{path}:6:3 CRK002 unknown field 'key'" in result.stdout
    assert "CRK001" not in result.stdout


def test_findings_are_sorted_by_position(write_manifest: Callable[..., Path]) -> None:
    text = VALID.replace("kind: Worker", "kind: Wrker").replace("name: email", "nme: email")
    text += "deprecated:\n  - {id: a.b, replaced_by: [x.y], sunset: 2020-01-01}\n"
    findings = Linter(collect_rules(), installed_paths=(), today=dt.date(2026, 1, 1)).lint_file(
        write_manifest(text)
    )
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
