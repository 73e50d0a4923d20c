"""A worker process's workers: the ones that load serve, the others are reported with why."""

from __future__ import annotations

import textwrap
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from crank.errors import UsageError
from crank.runtime.hosted_workers import HostedWorkers

if TYPE_CHECKING:
    from collections.abc import Callable

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
QUEUE = FIXTURES / "queue_workers"
MISSING = FIXTURES / "health_workers" / "missing_dependency"
NOT_READY = FIXTURES / "health_workers" / "not_ready"


@pytest.fixture(autouse=True)
def importable(monkeypatch: pytest.MonkeyPatch) -> None:
    for folder in (QUEUE, MISSING, NOT_READY):
        monkeypatch.syspath_prepend(str(folder))


@pytest.fixture
def worker_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], Path]:
    """``worker_module(body)``: a one-capability worker whose class body is ``body``."""
    monkeypatch.syspath_prepend(str(tmp_path))
    count = [0]

    def make(body: str) -> Path:
        count[0] += 1
        # a module name of its own: an earlier test's module stays in sys.modules
        name = f"crank_hosted_case_{uuid.uuid4().hex}"
        (tmp_path / f"{name}.py").write_text(
            "from crank.worker import WorkerApplication, capability\n\n"
            "class W(WorkerApplication):\n"
            + textwrap.indent(textwrap.dedent(body), "    ")
            + "\n    @capability('case.run')\n    def run(self, data, ctx):\n        return {}\n"
        )
        manifest = tmp_path / f"{name}.yaml"
        manifest.write_text(
            "apiVersion: crank.dev/v1\nkind: Worker\n"
            f"metadata: {{name: case-{count[0]}, version: 1.0.0}}\n"
            f"worker: {{entrypoint: '{name}:W'}}\n"
            "capabilities:\n  - {id: case.run, version: 1.0.0, input: {type: object}, "
            "output: {type: object}}\n"
        )
        return manifest

    return make


def states(workers: HostedWorkers) -> dict[str, tuple[str, str | None, bool]]:
    return {r.name: (r.state, r.reason, r.live) for r in workers.report().workers}


def test_a_worker_that_cannot_be_imported_leaves_the_others_serving() -> None:
    workers = HostedWorkers.from_paths([str(MISSING / "crank.yaml"), str(QUEUE / "crank.yaml")])
    assert {r.state for r in workers.report().workers} == {"starting"}  # nothing imported yet
    workers.load()
    try:
        assert states(workers) == {
            "missing-dependency": (
                "failed",
                "entrypoint module 'crank_health_missing_dep.worker' cannot be imported "
                "(No module named 'crank_fixture_dependency_not_installed')",
                True,
            ),
            "runtime-fixture": ("ready", None, True),
        }
        assert "broken.echo" not in workers.serving()
        assert "broken.echo" not in workers.bindings
        assert "fixture.echo" in workers.serving()
        assert workers.declared[0] == "broken.echo"  # still declared: the supervisor asks
    finally:
        workers.stop()


def test_setup_that_raises_fails_its_worker_only(worker_module: Callable[[str], Path]) -> None:
    broken = worker_module("def setup(self):\n    raise OSError('model file missing')\n")
    workers = HostedWorkers.from_paths([str(broken), str(QUEUE / "crank.yaml")])
    workers.load()
    try:
        assert states(workers)["case-1"] == (
            "failed",
            "setup() raised OSError: model file missing",
            True,
        )
        assert "case.run" not in workers.bindings
        assert "case.run" not in workers.serving()
    finally:
        workers.stop()


def test_readiness_and_liveness_follow_the_hooks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    flag, stuck = tmp_path / "ready", tmp_path / "stuck"
    monkeypatch.setenv("CRANK_FIXTURE_READY_FILE", str(flag))
    monkeypatch.setenv("CRANK_FIXTURE_STUCK_FILE", str(stuck))
    workers = HostedWorkers.from_paths([str(NOT_READY / "crank.yaml")])
    workers.load()
    try:
        not_ready = f"check_readiness() raised RuntimeError: {flag} does not exist yet"
        assert states(workers) == {"not-ready": ("not_ready", not_ready, True)}
        assert workers.serving() == ()
        flag.touch()
        report = workers.check()
        assert [(w.state, w.live) for w in report.workers] == [("ready", True)]
        assert workers.serving() == ("gated.echo",)
        stuck.touch()
        report = workers.check()
        assert report.workers[0].live is False
        assert report.workers[0].reason == "check_liveness() returned False"
        assert report.live is False
    finally:
        workers.stop()


def test_an_async_readiness_hook_that_answers_false(worker_module: Callable[[str], Path]) -> None:
    manifest = worker_module("async def check_readiness(self):\n    return False\n")
    workers = HostedWorkers.from_paths([str(manifest)])
    workers.load()
    try:
        assert states(workers) == {
            "case-1": ("not_ready", "check_readiness() returned False", True)
        }
    finally:
        workers.stop()


def test_a_capability_declared_twice_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="declared by"):
        HostedWorkers.from_paths([str(QUEUE / "crank.yaml"), str(QUEUE / "crank.yaml")])
