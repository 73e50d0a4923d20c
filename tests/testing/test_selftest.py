"""Self-test mode: examples, self_test(), and ensure_dependency semantics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from crank.manifest import load_manifest
from crank.testing.selftest import CheckResult, run_self_test

WORKERS = Path(__file__).resolve().parents[1] / "fixtures" / "workers"
BASE = WORKERS / "crank_fixture_selftest" / "crank.yaml"


@pytest.fixture(autouse=True)
def fixture_workers_importable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(WORKERS))


def variant(tmp_path: Path, **changes: Any) -> Path:
    doc = yaml.safe_load(BASE.read_text())
    if "entrypoint" in changes:
        doc["worker"]["entrypoint"] = f"crank_fixture_selftest.worker:{changes['entrypoint']}"
    if "system" in changes:
        doc["dependencies"]["system"] = changes["system"]
    if "examples" in changes:
        doc["capabilities"][0]["examples"] = changes["examples"]
    path = tmp_path / "crank.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def statuses(results: tuple[CheckResult, ...]) -> list[tuple[str, str, str]]:
    return [(r.kind, r.name, r.status) for r in results]


def test_all_examples_and_self_test_pass_optional_dependency_skipped() -> None:
    report = run_self_test(load_manifest(BASE))
    assert report.ok
    assert statuses(report.results) == [
        ("dependency", "json module (json)", "passed"),
        ("dependency", "absent helper (crank_fixture_absent_module)", "skipped"),
        ("example", "math.double: two", "passed"),
        ("example", "math.double: example 2", "passed"),
        ("self_test", "self_test()", "passed"),
    ]
    skipped = report.results[1]
    assert skipped.hint == "pip install crank-fixture-absent"
    assert skipped.detail == (
        "optional, Python module 'crank_fixture_absent_module' is not installed"
    )


def test_missing_required_dependency_fails_with_its_hint_and_skips_examples(
    tmp_path: Path,
) -> None:
    system = [
        {
            "name": "absent helper",
            "check": "crank_fixture_absent_module",
            "hint": "pip install crank-fixture-absent",
        }
    ]
    report = run_self_test(load_manifest(variant(tmp_path, system=system)))
    assert not report.ok
    assert statuses(report.results) == [
        ("dependency", "absent helper (crank_fixture_absent_module)", "failed"),
        ("example", "math.double: two", "skipped"),
        ("example", "math.double: example 2", "skipped"),
    ]
    assert report.results[0].hint == "pip install crank-fixture-absent"
    assert report.results[1].detail == (
        "not run: required dependency missing (absent helper (crank_fixture_absent_module))"
    )


def test_wrong_output_declared_error_and_crash_are_failures(tmp_path: Path) -> None:
    examples = [
        {"name": "wrong", "input": {"n": 2}, "output": {"result": 5}},
        {"name": "negative", "input": {"n": -1}},
        {"name": "crash", "input": {"n": 13}},
        {"name": "exits", "input": {"n": 99}},
        {"name": "invalid", "input": {"n": "two"}},
    ]
    report = run_self_test(load_manifest(variant(tmp_path, examples=examples)))
    assert not report.ok
    details = {r.name: (r.status, r.detail) for r in report.results if r.kind == "example"}
    assert details == {
        "math.double: wrong": ("failed", "output $.result is 4, expected 5"),
        "math.double: negative": ("failed", "-1 is negative"),
        "math.double: crash": ("failed", "RuntimeError: unlucky number"),
        "math.double: exits": ("failed", "the handler called sys.exit(0)"),
        "math.double: invalid": (
            "failed",
            'input for math.double is invalid: $.n: "two" is not of type "integer"',
        ),
    }


def test_self_test_using_ensure_dependency_is_skipped(tmp_path: Path) -> None:
    report = run_self_test(load_manifest(variant(tmp_path, entrypoint="NeedsMissingToolWorker")))
    assert report.ok
    last = report.results[-1]
    assert (last.kind, last.status, last.hint) == (
        "self_test",
        "skipped",
        "pip install crank-fixture-absent",
    )
    assert "crank_fixture_absent_module" in last.detail


def test_async_self_test_returning_false_fails(tmp_path: Path) -> None:
    report = run_self_test(load_manifest(variant(tmp_path, entrypoint="BrokenSelfTestWorker")))
    assert not report.ok
    assert report.results[-1] == CheckResult(
        "self_test", "self_test()", "failed", "self_test() returned False"
    )


def test_a_self_test_that_calls_sys_exit_fails_and_the_report_is_kept(tmp_path: Path) -> None:
    """SystemExit(0) escaped: crank test-worker ended with status 0 and no report."""
    report = run_self_test(load_manifest(variant(tmp_path, entrypoint="ExitingSelfTestWorker")))
    assert not report.ok
    assert report.results[-1] == CheckResult(
        "self_test",
        "self_test()",
        "failed",
        "self_test() called sys.exit(0)",
        "a self-test returns or raises; it must not end the process",
    )


def test_unloadable_worker_is_one_failed_check(tmp_path: Path) -> None:
    report = run_self_test(load_manifest(variant(tmp_path, entrypoint="Nope")))
    assert statuses(report.results)[-1] == (
        "load",
        "crank_fixture_selftest.worker:Nope",
        "failed",
    )
    assert report.results[-1].detail == (
        "worker 'doubler': 'crank_fixture_selftest.worker' has no attribute 'Nope'"
    )
