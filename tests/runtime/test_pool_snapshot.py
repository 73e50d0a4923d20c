"""The pool file shared with the HTTP processes, and the HTTP processes' restarts.

The pool file is written by the supervisor's process and read by each HTTP process;
these tests write it with :class:`PoolPublisher` from a pool whose answers they set,
and read it back with :class:`SharedPoolView` into a real :class:`StatusTracker`.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

import pytest

from crank.runtime.brokers import open_broker
from crank.runtime.config import RuntimeConfig
from crank.runtime.http_processes import (
    HttpProcesses,
    HttpProcessPlan,
    per_process_config,
)
from crank.runtime.pool_snapshot import PoolPublisher, SharedPoolView, pool_document
from crank.runtime.status_tracker import StatusTracker
from crank.runtime.worker_reports import WorkerHealth

if TYPE_CHECKING:
    from pathlib import Path


class Pool:
    """A pool whose answers the test sets (what a supervisor would say)."""

    def __init__(self) -> None:
        self.counts = (2, 2)
        self.health = {
            "echo": WorkerHealth("echo", ("demo.echo",), "ready", None, ready_processes=2),
            "broken": WorkerHealth("broken", ("demo.broken",), "failed", "No module named x"),
        }
        self.decision: dict[str, Any] | None = {"action": "hold", "reason": "steady"}

    def worker_counts(self) -> tuple[int, int]:
        return self.counts

    def last_decision(self) -> dict[str, Any] | None:
        return self.decision

    def worker_health(self) -> dict[str, WorkerHealth]:
        return dict(self.health)

    def crashes(self) -> int:
        return 3

    def stale_processes(self) -> list[str]:
        return ["host-1-w2"]

    def replaced_unlive(self) -> int:
        return 1

    def problem(self) -> str | None:
        return None


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def test_what_the_supervisor_writes_the_http_processes_read(tmp_path: Path) -> None:
    path = tmp_path / "pool.json"
    pool = Pool()
    publisher = PoolPublisher(
        pool, path, interval_s=60, http=lambda: {"configured": 2, "alive": 2, "restarts": 0}
    )
    publisher.publish()
    view = SharedPoolView(path)
    assert view.worker_counts() == (2, 2)
    assert view.worker_health() == pool.health
    assert (view.crashes(), view.stale_processes()) == (3, ["host-1-w2"])
    assert view.replaced_unlive() == 1
    assert view.last_decision() == {"action": "hold", "reason": "steady"}
    assert view.http_processes() == {"configured": 2, "alive": 2, "restarts": 0}
    assert view.problem() is None
    # a change is seen once the file is replaced (and the short recheck interval passed)
    pool.counts = (2, 1)
    publisher.publish()
    moved = SharedPoolView(path, monotonic=iter(range(0, 100, 1)).__next__)
    assert moved.worker_counts() == (2, 1)


def test_a_supervisor_that_stops_writing_makes_every_process_not_ready(tmp_path: Path) -> None:
    path = tmp_path / "pool.json"
    clock = Clock()
    path.write_text(json.dumps(pool_document(Pool(), clock=clock)))
    view = SharedPoolView(path, clock=clock)
    broker = open_broker("memory://")
    try:
        status = StatusTracker(broker, min_workers=2, pool=view)
        status.pool = view
        ready, problems = status.ready()
        assert not ready  # the broken worker
        assert problems == ["worker 'broken' failed to load: No module named x"]
        clock.now += 11.0  # past STALE_AFTER_S
        ready, problems = status.ready()
        assert not ready
        assert problems[:2] == [
            "the supervisor has not reported the worker processes for 11 s",
            "0 of min 2 worker processes healthy",
        ]
        live, why = status.live()
        assert not live
        assert why[0] == "the supervisor has not reported the worker processes for 11 s"
        report = status.report()
        assert report["overall_health"] == "critical"
        assert report["problems"][0] == (
            "the supervisor has not reported the worker processes for 11 s"
        )
    finally:
        broker.close()


def test_no_pool_file_yet_is_not_ready_rather_than_an_error(tmp_path: Path) -> None:
    view = SharedPoolView(tmp_path / "missing.json")
    assert view.problem() == "the supervisor has not reported the worker processes yet"
    assert view.worker_counts() == (0, 0)
    assert (view.worker_health(), view.crashes(), view.stale_processes()) == ({}, 0, [])


def test_a_half_written_file_leaves_the_last_whole_one_standing(tmp_path: Path) -> None:
    path = tmp_path / "pool.json"
    path.write_text(json.dumps(pool_document(Pool())))
    ticks = iter(range(0, 100, 1))
    view = SharedPoolView(path, monotonic=ticks.__next__)
    assert view.worker_counts() == (2, 2)
    path.write_text('{"version": 1, "total"')  # what a torn write would look like
    assert view.worker_counts() == (2, 2)


def test_the_inflight_bound_is_divided_between_the_http_processes() -> None:
    config = RuntimeConfig(max_inflight_requests=64, http_processes=3)
    assert per_process_config(config).max_inflight_requests == 22
    assert per_process_config(RuntimeConfig(max_inflight_requests=1, http_processes=4)) \
        .max_inflight_requests == 1  # fmt: skip


class Log:
    def __init__(self) -> None:
        self.lines: list[tuple[str, dict[str, Any]]] = []

    def info(self, event: str, **kw: Any) -> None:
        self.lines.append((event, kw))

    error = warning = info


def plan_in(tmp_path: Path) -> HttpProcessPlan:
    """A plan for processes that never serve (the restart tests run stand-ins)."""
    return HttpProcessPlan(
        config=RuntimeConfig(),
        manifests=(),
        fd=0,
        pool_file=tmp_path / "pool.json",
        metrics_dir=tmp_path,
        slots_dir=str(tmp_path),
        limits={},
        session_key=None,
    )


def test_a_process_that_keeps_failing_is_restarted_with_a_growing_backoff(
    tmp_path: Path,
) -> None:
    plan = plan_in(tmp_path)
    clock = Clock()
    log = Log()
    # a process that reads its plan and exits 3 at once, like one that cannot serve
    command = [sys.executable, "-c", "import sys; sys.stdin.buffer.read(); sys.exit(3)"]
    front = HttpProcesses(plan, 1, env={}, log=log, command=lambda: command, clock=clock)
    front.start()
    [slot] = front.slots
    assert slot.proc is not None
    slot.proc.wait(timeout=60)

    def died() -> list[dict[str, Any]]:
        return [kw for event, kw in log.lines if event == "http_process_died"]

    front.check()
    assert [(d["exit_code"], d["restart_in_s"]) for d in died()] == [(3, 1.0)]
    front.check()  # not yet due
    assert front.restarts == 0
    clock.now += 1.0
    front.check()
    assert front.restarts == 1
    slot.proc.wait(timeout=60)
    front.check()
    assert [d["restart_in_s"] for d in died()] == [1.0, 2.0]
    assert front.report() == {"configured": 1, "alive": 0, "restarts": 1}
    front.stop(0)


def test_shared_server_metrics_refuse_to_count_in_process_only(tmp_path: Path) -> None:
    from crank.runtime.metrics import ServerMetrics

    # the test process counts in memory (no PROMETHEUS_MULTIPROC_DIR when it imported it)
    with pytest.raises(RuntimeError, match="PROMETHEUS_MULTIPROC_DIR"):
        ServerMetrics(multiprocess_dir=tmp_path, shared=True)


def test_a_restart_that_cannot_start_a_process_is_tried_again(tmp_path: Path) -> None:
    plan = plan_in(tmp_path)
    clock = Clock()
    log = Log()
    commands = [
        [sys.executable, "-c", "import sys; sys.stdin.buffer.read(); sys.exit(3)"],
        [str(tmp_path / "no-such-program")],  # what a failed start looks like: OSError
        [sys.executable, "-c", "import sys; sys.stdin.buffer.read()"],
    ]
    front = HttpProcesses(plan, 1, env={}, log=log, command=lambda: commands.pop(0), clock=clock)
    front.start()
    [slot] = front.slots
    assert slot.proc is not None
    slot.proc.wait(timeout=60)
    front.check()  # died: due in 1 s
    clock.now += 1.0
    front.check()  # the start fails: logged, due again in 4 s
    assert [event for event, _ in log.lines][-1] == "http_process_start_failed"
    clock.now += 4.0
    front.check()  # started
    assert slot.proc.wait(timeout=60) == 0
    assert front.restarts == 1  # a start that failed is not a restart
    front.stop(0)
