"""The health report document and its overall verdict."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

from crank.runtime.health_report import (
    ResourceUtilization,
    SystemSnapshot,
    health_report,
    overall_health,
)
from crank.runtime.worker_reports import WorkerHealth

NOW = dt.datetime(2026, 11, 22, 12, tzinfo=dt.UTC)


def snap(**kw: object) -> SystemSnapshot:
    values: dict[str, object] = {
        "broker_ok": True, "min_workers": 2, "total_workers": 2, "healthy_workers": 2,
        "busy_workers": 1, "queue_depth": {"a.x": 3, "b.y": 9}, "oldest_task_age_s": 12.7,
    }  # fmt: skip
    values.update(kw)
    return SystemSnapshot(**values)  # type: ignore[arg-type]


def test_report_document() -> None:
    ready = WorkerHealth("demo", ("a.x", "b.y"), "ready", ready_processes=2)
    doc = health_report(
        snap(resources=ResourceUtilization(12.34, 56.78, 40.0), workers={"demo": ready}), NOW
    )
    assert doc["timestamp"] == "2026-11-22T12:00:00+00:00"
    assert doc["overall_health"] == "healthy"
    assert doc["worker_pool_health"] == {
        "total_workers": 2,
        "healthy_workers": 2,
        "failed_workers": 0,
        "failed_workers_window_s": 300,
        "replaced_unlive_workers": 0,
        "utilization_percentage": 50.0,
    }
    assert doc["workers"] == {
        "demo": {
            "state": "ready",
            "reason": None,
            "capabilities": ["a.x", "b.y"],
            "ready_processes": 2,
            "live": True,
        }
    }
    q = doc["queue_health"]
    assert (q["total_pending_tasks"], q["oldest_task_age_seconds"], q["bottleneck_agent"]) == (
        12,
        12,
        "b.y",
    )
    assert doc["resource_utilization"] == {
        "cpu_percentage": 12.3, "memory_percentage": 56.8, "llm_api_usage_percentage": 40.0
    }  # fmt: skip


def test_verdicts() -> None:
    assert overall_health(snap(broker_ok=False)) == ("critical", ["broker unreachable"])
    assert overall_health(snap(healthy_workers=0)) == ("critical", ["no healthy worker process"])
    assert overall_health(snap(healthy_workers=1))[0] == "degraded"
    assert overall_health(snap(oldest_task_age_s=301.0)) == (
        "degraded",
        ["a task has waited 301 s for a worker"],
    )
    assert overall_health(snap(paused_capabilities=("a.x",)))[0] == "degraded"
    assert overall_health(snap(min_workers=0, healthy_workers=0, total_workers=0)) == (
        "healthy",
        [],
    )


def test_workers_that_cannot_serve_degrade_or_break_the_verdict() -> None:
    ready = WorkerHealth("good", ("a.x",), "ready", ready_processes=2)
    broken = WorkerHealth("bad", ("b.y",), "failed", "ModuleNotFoundError: No module named 'nope'")
    waiting = WorkerHealth("slow", ("c.z",), "not_ready", "the model is not loaded")
    assert overall_health(snap(workers={"good": ready, "bad": broken})) == (
        "degraded",
        ["worker 'bad' failed to load: ModuleNotFoundError: No module named 'nope'"],
    )
    assert overall_health(snap(workers={"good": ready, "slow": waiting})) == (
        "degraded",
        ["worker 'slow' is not ready: the model is not loaded"],
    )
    # nothing can serve at all: critical
    assert overall_health(snap(workers={"bad": broken, "slow": waiting})) == (
        "critical",
        [
            "no worker can serve",
            "worker 'bad' failed to load: ModuleNotFoundError: No module named 'nope'",
            "worker 'slow' is not ready: the model is not loaded",
        ],
    )
    unlive = WorkerHealth("good", ("a.x",), "ready", "deadlocked", ready_processes=1, live=False)
    assert overall_health(snap(workers={"good": unlive})) == (
        "degraded",
        ["worker 'good' is not live: deadlocked"],
    )


def test_recent_crashes_degrade_and_are_counted() -> None:
    assert overall_health(snap(crashed_workers=3)) == (
        "degraded",
        ["3 worker process(es) crashed in the last 300 s"],
    )
    doc = health_report(snap(crashed_workers=3), NOW)
    assert doc["worker_pool_health"]["failed_workers"] == 3


def test_processes_replaced_for_staying_not_live_are_counted() -> None:
    doc = health_report(snap(replaced_unlive_workers=2), NOW)
    assert doc["worker_pool_health"]["replaced_unlive_workers"] == 2


def test_queue_numbers_the_broker_did_not_give_are_null_not_zero() -> None:
    """Nothing is known of the queue while the broker does not answer: the report says
    null (a zero would clear an alert on dead letters), and the verdict is critical for
    the broker, not for a queue it made up."""
    unknown = snap(
        broker_ok=False,
        busy_workers=None,
        queue_depth=None,
        oldest_task_age_s=None,
        running_tasks=None,
        dead_letters=None,
        backing_off=None,
    )
    doc = health_report(unknown, NOW)
    assert (doc["overall_health"], doc["problems"]) == ("critical", ["broker unreachable"])
    assert set(doc["queue_health"].values()) == {None}
    assert doc["worker_pool_health"]["utilization_percentage"] is None
    # a broker that answers but whose statistics are missing is no healthy queue either
    health, problems = overall_health(replace(unknown, broker_ok=True))
    assert (health, problems) == (
        "degraded",
        ["the queue's numbers are unknown: the broker's statistics failed"],
    )


def test_a_pool_with_no_healthy_process_says_why() -> None:
    stuck = WorkerHealth("demo", ("a.x",), "ready", ready_processes=1, live=False, reason="late")
    health, problems = overall_health(snap(healthy_workers=0, workers={"demo": stuck}))
    assert (health, problems) == ("critical", [
        "no healthy worker process", "worker 'demo' is not live: late",
    ])  # fmt: skip
    health, problems = overall_health(snap(healthy_workers=0, crashed_workers=3))
    assert (health, problems) == ("critical", [
        "no healthy worker process", "3 worker process(es) crashed in the last 300 s",
    ])  # fmt: skip
