"""Every compat rule has a passing and a failing fixture, checked through the CLI."""

from __future__ import annotations

import datetime as dt
import json
from typing import TYPE_CHECKING

import pytest
from click.testing import CliRunner

from crank.cli import cli
from crank.routing.compat import RULES, CompatContext, CompatRule
from crank.routing.sources import manifest_from_file

from .conftest import COMPAT

if TYPE_CHECKING:
    from pathlib import Path

TODAY = "2026-11-22"


def run_compat(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["compat", *args, "--today", TODAY])
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize("rule", sorted(r.id for r in RULES))
def test_compatible_change_passes(rule: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(COMPAT)
    code, out, err = run_compat(f"{rule}/old.yaml", f"{rule}/new-ok.yaml")
    assert (code, err) == (0, "")
    assert out == (COMPAT / rule / "new-ok.expected.txt").read_text()
    assert out.splitlines()[-1].startswith("compatible: no breaking changes from demo 1.0.0")


@pytest.mark.parametrize("rule", sorted(r.id for r in RULES))
def test_breaking_change_fails_with_the_rule_id(rule: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(COMPAT)
    code, out, err = run_compat(f"{rule}/old.yaml", f"{rule}/new-bad.yaml")
    assert (code, err) == (1, "")
    assert out == (COMPAT / rule / "new-bad.expected.txt").read_text()
    assert f" {rule} " in out
    assert f"({rule}" in out.splitlines()[-1] or f", {rule}" in out.splitlines()[-1]


def test_cmp001_exact_text(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(COMPAT)
    code, out, _ = run_compat("CMP001/old.yaml", "CMP001/new-bad.yaml")
    assert code == 1
    assert out == (
        "CMP001/old.yaml:20:9 CMP001 capability 'demo.count' (1.0.0) was removed without a "
        "deprecated entry: clients calling it are stranded [$.capabilities[1].id]\n"
        "    hint: keep it, or add a `deprecated:` entry for demo.count with replaced_by, a shim "
        "if it was split, and a sunset at least 90 days away\n"
        "removed: demo.count\n"
        "1 breaking change (CMP001) from demo 1.0.0 to demo 1.1.0\n"
    )


def test_min_grace_days_is_configurable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(COMPAT)
    code, out, _ = run_compat("CMP007/old.yaml", "CMP007/new-ok.yaml", "--min-grace-days", "91")
    assert code == 1
    assert (
        "'demo.shout' gets 90 days of grace (today to sunset 2027-02-20), fewer than the minimum 91"
        in out
    )
    code, _, _ = run_compat("CMP007/old.yaml", "CMP007/new-bad.yaml", "--min-grace-days", "0")
    assert code == 1  # moving a sunset earlier is breaking whatever the minimum


def test_json_format_is_the_documented_structure(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(COMPAT)
    code, out, _ = run_compat("CMP003/old.yaml", "CMP003/new-bad.yaml", "--format", "json")
    assert code == 1
    doc = json.loads(out)
    assert sorted(doc) == [
        "breaking",
        "changes",
        "min_grace_days",
        "new",
        "ok",
        "old",
        "today",
        "warnings",
    ]
    assert doc["old"]["name"] == "demo" and doc["old"]["version"] == "1.0.0"
    assert doc["old"]["path"] == "CMP003/old.yaml"
    assert len(doc["old"]["digest"]) == 64
    assert doc["ok"] is False
    assert doc["breaking"] == [
        {
            "file": "CMP003/new-bad.yaml",
            "line": 34,
            "col": 36,
            "rule": "CMP003",
            "severity": "error",
            "message": "the shim of 'demo.classify' routes kind='b' to 'demo.classify_c', "
            "which this manifest does not declare",
            "json_path": "$.deprecated[0].shim.map.b",
            "hint": "point replaced_by and shim.map at capabilities this manifest declares",
            "capability": "demo.classify",
            "side": "new",
        }
    ]
    assert doc["changes"] == {
        "added": ["demo.classify_a", "demo.classify_b"],
        "removed": ["demo.classify"],
        "split": [{"from": "demo.classify", "to": ["demo.classify_a", "demo.classify_b"]}],
        "renamed": [],
        "merged": [],
        "deprecated": [
            {
                "id": "demo.classify",
                "replaced_by": ["demo.classify_a", "demo.classify_b"],
                "sunset": "2027-06-30",
                "deprecated_since": "2026-11-22",
                "select_by": "kind",
                "legacy_routes": [],
            }
        ],
        "changed": [],
    }


def test_github_format_annotates_each_finding(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(COMPAT)
    code, out, _ = run_compat("CMP002/old.yaml", "CMP002/new-bad.yaml", "--format", "github")
    assert code == 1
    assert out == (
        "::error file=CMP002/old.yaml,line=24,col=9,title=CMP002::deprecated capability "
        "'demo.legacy' was removed before its sunset (2027-06-30): clients still calling it are "
        "stranded [$.deprecated[1].id]%0Ahint: keep the deprecated entry until 2027-06-30 has "
        "passed\n"
        "1 breaking change (CMP002) from demo 1.0.0 to demo 1.1.0\n"
    )


def test_github_format_is_the_default_on_github_actions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(COMPAT)
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    _, out, _ = run_compat("CMP001/old.yaml", "CMP001/new-bad.yaml")
    assert out.startswith("::error file=CMP001/old.yaml,line=20,col=9,title=CMP001::")


def test_the_rules_are_a_table_of_one_function_per_rule() -> None:
    assert [r.id for r in RULES] == [f"CMP00{n}" for n in range(1, 9)]
    assert len({r.check for r in RULES}) == len(RULES)
    assert all(r.summary for r in RULES)


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.id)
def test_each_rule_function_reports_only_its_own_id(rule: CompatRule) -> None:
    (old, _), (bad, _), (ok, _) = (
        manifest_from_file(COMPAT / rule.id / name)
        for name in ("old.yaml", "new-bad.yaml", "new-ok.yaml")
    )
    today = dt.date.fromisoformat(TODAY)
    found = list(rule.check(CompatContext(old, bad, today)))
    assert found, f"{rule.id} finds nothing in its failing fixture"
    assert {f.rule for f in found} == {rule.id}
    assert [
        f for f in rule.check(CompatContext(old, ok, today)) if f.finding.severity == "error"
    ] == []


def test_cmp008_after_a_major_bump_is_only_warnings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bumped = (
        (COMPAT / "CMP008" / "new-bad.yaml")
        .read_text()
        .replace("version: 1.1.0\n    input", "version: 2.0.0\n    input")
    )
    (tmp_path / "new.yaml").write_text(bumped)
    code, out, err = run_compat(str(COMPAT / "CMP008" / "old.yaml"), str(tmp_path / "new.yaml"))
    assert (code, err) == (0, "")
    assert out.count(" CMP008 warning: ") == 4
    assert out.splitlines()[-1] == (
        "compatible: no breaking changes from demo 1.0.0 to demo 1.1.0, 4 warnings"
    )


def test_cmp008_warns_when_a_deprecated_ids_successor_fails_sooner(tmp_path: Path) -> None:
    head = (
        "apiVersion: crank.dev/v1\nkind: Worker\nmetadata: {name: demo, version: 1.0.0}\n"
        "worker: {entrypoint: demo.worker:Demo}\ncapabilities:\n"
    )
    schemas = "input: {type: object}, output: {type: object}"
    (tmp_path / "old.yaml").write_text(
        head + f"  - {{id: demo.old, version: 1.0.0, {schemas}, timeout_s: 60, "
        "errors: [{code: EMPTY}, {code: TOO_LONG}]}\n"
    )
    (tmp_path / "new.yaml").write_text(
        head + f"  - {{id: demo.new, version: 1.0.0, {schemas}, errors: [{{code: EMPTY}}]}}\n"
        "deprecated:\n  - {id: demo.old, replaced_by: [demo.new], sunset: 2027-06-01}\n"
    )
    code, out, err = run_compat(str(tmp_path / "old.yaml"), str(tmp_path / "new.yaml"))
    assert (code, err) == (0, "")
    warnings = [line.split(" CMP008 warning: ")[1] for line in out.splitlines() if "CMP008" in line]
    assert sorted(warnings) == [
        "calls to deprecated 'demo.old' routed to 'demo.new' can no longer fail with "
        "TOO_LONG, which demo.new does not declare [$.capabilities[0].errors]",
        "calls to deprecated 'demo.old' routed to 'demo.new' get its timeout of 30 s instead "
        "of 60 s [$.capabilities[0].timeout_s]",
    ]


def test_a_capability_that_only_became_streaming_is_listed_as_changed(tmp_path: Path) -> None:
    """The report called it breaking (CMP005) but left it out of changes.changed, which
    the migration checklist is generated from."""
    old = (COMPAT / "CMP008" / "old.yaml").read_text()
    (tmp_path / "new.yaml").write_text(
        old.replace("    version: 1.0.0\n", "    version: 1.0.0\n    streaming: true\n")
    )
    code, out, _ = run_compat(
        str(COMPAT / "CMP008" / "old.yaml"), str(tmp_path / "new.yaml"), "--format", "json"
    )
    assert code == 1
    assert json.loads(out)["changes"]["changed"] == [
        {"id": "demo.echo", "old_version": "1.0.0", "new_version": "1.0.0", "breaking": True}
    ]
