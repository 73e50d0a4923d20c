"""Self-test mode: run a worker's declared examples and its ``self_test()`` in-process.

Dependencies follow ``ensure_dependency`` semantics: the manifest's system
dependencies are checked first; a missing *optional* one is skipped with its
hint, a missing *required* one fails with its hint (and the examples are not
run, since they would fail for that reason alone). A ``self_test()`` that calls
``ensure_dependency`` for something missing is reported as skipped.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from crank.errors import CrankError, DependencyMissing
from crank.testing.dependencies import check_dependency
from crank.testing.ensure import self_test_mode
from crank.worker.host import WorkerHost

if TYPE_CHECKING:
    from crank.manifest import Capability, Example, Manifest, SystemDependency

Status = Literal["passed", "failed", "skipped"]
CheckKind = Literal["dependency", "load", "example", "self_test"]


@dataclass(frozen=True)
class CheckResult:
    kind: CheckKind
    name: str
    status: Status
    detail: str = ""
    hint: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "status": self.status,
            "detail": self.detail,
            "hint": self.hint,
        }


@dataclass(frozen=True)
class SelfTestReport:
    worker: str
    version: str
    results: tuple[CheckResult, ...]

    @property
    def ok(self) -> bool:
        return all(r.status != "failed" for r in self.results)

    def count(self, status: Status) -> int:
        return sum(1 for r in self.results if r.status == status)

    def as_dict(self) -> dict[str, Any]:
        return {
            "worker": self.worker,
            "version": self.version,
            "ok": self.ok,
            "passed": self.count("passed"),
            "failed": self.count("failed"),
            "skipped": self.count("skipped"),
            "results": [r.as_dict() for r in self.results],
        }


def check_system_dependency(dep: SystemDependency) -> CheckResult:
    name = f"{dep.name} ({dep.check})"
    try:
        found = check_dependency(dep.check, version_command=dep.version_command)
    except CrankError as exc:
        return CheckResult("dependency", name, "failed", exc.message, exc.hint)
    hint = dep.hint or found.hint
    if found.available:
        return CheckResult("dependency", name, "passed", found.reason)
    if found.broken:
        return CheckResult(
            "dependency", name, "failed", f"installed but broken: {found.reason}", hint
        )
    if dep.optional:
        return CheckResult("dependency", name, "skipped", f"optional, {found.reason}", hint)
    return CheckResult("dependency", name, "failed", f"required, {found.reason}", hint)


def _pytest_outcome(exc: BaseException) -> tuple[Status, str] | None:
    """A pytest skip or fail raised by ``ensure_dependency`` when running under pytest."""
    kind = type(exc)
    if not kind.__module__.startswith("_pytest"):
        return None
    status: dict[str, Status] = {"Skipped": "skipped", "Failed": "failed"}
    found = status.get(kind.__name__)
    return (found, str(getattr(exc, "msg", "") or exc)) if found else None


def _mismatch(expected: Any, actual: Any, path: str = "$") -> str | None:
    """The first place where ``actual`` does not contain ``expected`` (a subset match)."""
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return f"{path} is {actual!r}, expected an object"
        for key, value in expected.items():
            if key not in actual:
                return f"{path}.{key} is missing, expected {value!r}"
            found = _mismatch(value, actual[key], f"{path}.{key}")
            if found:
                return found
        return None
    if expected != actual:
        return f"{path} is {actual!r}, expected {expected!r}"
    return None


def _describe(exc: BaseException) -> tuple[str, str | None]:
    if isinstance(exc, CrankError):
        return exc.message, exc.hint
    return f"{type(exc).__name__}: {exc}", "the handler raised; run it under a debugger or pytest"


def run_example(host: WorkerHost, cap: Capability, index: int, example: Example) -> CheckResult:
    name = f"{cap.id}: {example.name or f'example {index + 1}'}"
    try:
        result = host.call(cap.id, example.input)
    except DependencyMissing as exc:
        return CheckResult("example", name, "skipped", exc.message, exc.hint)
    except Exception as exc:
        detail, hint = _describe(exc)
        return CheckResult("example", name, "failed", detail, hint)
    except SystemExit as exc:  # would end `crank test-worker` (with 0: a false pass)
        return CheckResult(
            "example",
            name,
            "failed",
            f"the handler called sys.exit({exc.code!r})",
            "a handler returns or raises; it must not end the process",
        )
    except BaseException as exc:
        outcome = _pytest_outcome(exc)
        if outcome is None:
            raise
        return CheckResult("example", name, outcome[0], outcome[1])
    if example.output is not None:
        actual = result[-1] if cap.streaming and isinstance(result, list) and result else result
        wrong = _mismatch(dict(example.output), actual)
        if wrong:
            return CheckResult("example", name, "failed", f"output {wrong}")
    return CheckResult("example", name, "passed")


def run_app_self_test(host: WorkerHost) -> CheckResult | None:
    method = getattr(host.app, "self_test", None)
    if not callable(method):
        return None
    try:
        outcome = method()
        if inspect.isawaitable(outcome):
            outcome = host._run(outcome)
    except DependencyMissing as exc:
        return CheckResult("self_test", "self_test()", "skipped", exc.message, exc.hint)
    except Exception as exc:
        detail, hint = _describe(exc)
        return CheckResult("self_test", "self_test()", "failed", detail, hint)
    except SystemExit as exc:  # would end `crank test-worker` (with 0: a false pass)
        return CheckResult(
            "self_test",
            "self_test()",
            "failed",
            f"self_test() called sys.exit({exc.code!r})",
            "a self-test returns or raises; it must not end the process",
        )
    except BaseException as exc:
        pytest_outcome = _pytest_outcome(exc)
        if pytest_outcome is None:
            raise
        return CheckResult("self_test", "self_test()", *pytest_outcome)
    if outcome is False:
        return CheckResult("self_test", "self_test()", "failed", "self_test() returned False")
    return CheckResult("self_test", "self_test()", "passed")


def run_self_test(manifest: Manifest, *, host: WorkerHost | None = None) -> SelfTestReport:
    """Check dependencies, then run every example and ``self_test()`` through a WorkerHost."""

    results = [check_system_dependency(dep) for dep in manifest.dependencies.system]
    missing = [r.name for r in results if r.status == "failed"]

    def report() -> SelfTestReport:
        return SelfTestReport(manifest.name, manifest.metadata.version, tuple(results))

    examples = [(cap, i, ex) for cap in manifest.capabilities for i, ex in enumerate(cap.examples)]
    if missing:
        reason = f"not run: required dependency missing ({', '.join(missing)})"
        results += [
            CheckResult("example", f"{cap.id}: {ex.name or f'example {i + 1}'}", "skipped", reason)
            for cap, i, ex in examples
        ]
        return report()
    # ``ensure_dependency`` raises crank errors (not pytest skips) in self-test mode
    with self_test_mode():
        return _run_checks(manifest, host, results, examples)


def _run_checks(
    manifest: Manifest,
    host: WorkerHost | None,
    results: list[CheckResult],
    examples: list[tuple[Capability, int, Example]],
) -> SelfTestReport:
    def report() -> SelfTestReport:
        return SelfTestReport(manifest.name, manifest.metadata.version, tuple(results))

    owned = host is None
    try:
        if host is None:
            host = WorkerHost(manifest)
        host.start()
    except Exception as exc:
        detail, hint = _describe(exc)
        results.append(CheckResult("load", manifest.worker.entrypoint, "failed", detail, hint))
        if owned and host is not None:
            host.stop()
        return report()
    try:
        results += [run_example(host, cap, i, ex) for cap, i, ex in examples]
        own = run_app_self_test(host)
        if own is not None:
            results.append(own)
    finally:
        if owned:
            host.stop()
    return report()
