"""Prod mode scales the pool on queue depth; dev mode keeps a fixed small pool and readable logs."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow


def test_prod_mode_scales_up_on_a_backlog(crank_run: Any) -> None:
    # fixture manifest: min 1, max 3, target_queue_per_worker 5
    run = crank_run("--mode", "prod")
    assert len(run.workers()) == 1
    for i in range(40):
        body = {"capability": "demo.slow", "input": {"seconds": 0.5}, "priority": i % 3}
        assert run.http.post("/v1/tasks", json=body).status_code == 202

    def scaled() -> dict[str, Any] | None:
        report = run.http.get("/v1/status").json()
        decision = report.get("last_scaling_decision")
        return report if decision and decision["decision_type"] == "scale_up" else None

    report = run.wait_until(scaled, timeout_s=60, what="a scale_up decision")
    decision = report["last_scaling_decision"]
    assert decision["current_workers"] == 1 and 1 < decision["target_workers"] <= 3
    run.wait_until(lambda: len(run.workers()) >= 2, what="more worker processes")
    lines = [json.loads(line) for line in run.log().splitlines() if line.startswith("{")]
    assert any(line.get("event") == "scaling_decision" for line in lines)
    assert run.terminate() == 0


def test_dev_mode_is_a_fixed_pool_with_console_logs(crank_run: Any) -> None:
    run = crank_run("--mode", "dev")
    assert len(run.workers()) == 1
    report = run.http.get("/v1/status").json()
    assert report["worker_pool_health"]["total_workers"] == 1
    assert run.terminate() == 0
    log = run.log()
    assert "[info     ] crank_started" in log
    assert "mode=dev" in log


def test_api_only_with_a_worker_process_started_elsewhere(crank_run: Any) -> None:
    import subprocess
    import sys

    run = crank_run("--max-workers", "0")
    assert run.workers() == []
    assert run.http.get("/ready").status_code == 200
    task = run.http.post("/v1/tasks", json={"capability": "demo.echo", "input": {"text": "later"}})
    assert task.json()["status"] == "pending"
    fixture = Path(__file__).resolve().parents[2] / "fixtures" / "http_workers"
    worker = subprocess.Popen(
        [sys.executable, "-m", "crank.runtime.worker_process", "--broker", run.broker_url,
         "--manifest", str(fixture / "crank.yaml"), "--consumer", "elsewhere-1"],
        env={**run.env, "PYTHONPATH": str(fixture)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        task_id = task.json()["id"]
        done = run.wait_until(
            lambda: (
                (d := run.http.get(f"/v1/tasks/{task_id}").json())["status"] == "succeeded" and d
            ),
            what="the task run by the outside worker",
        )
        assert done["result"] == {"text": "later"}
    finally:
        worker.terminate()
        assert worker.wait(timeout=30) == 0
    assert run.terminate() == 0


def test_retries_backing_off_add_no_worker_processes(crank_run: Any, tmp_path: Any) -> None:
    """A downstream outage: every task failed and waits out a long retry backoff. They
    are pending, and /v1/status and /metrics say how many back off, but no worker could
    take them before the backoff ends: the autoscaler asks for no more processes (a
    backlog of ready tasks as large scales up: test_prod_mode_scales_up_on_a_backlog)."""
    kinds = Path(__file__).resolve().parents[2] / "fixtures" / "workers" / "crank_fixture_kinds"
    broker = f"sqlite:///{tmp_path / 'queue.db'}?retry_base_s=600&retry_max_s=600"
    run = crank_run(
        "--mode", "prod", "--broker", broker, "--min-workers", "1", "--max-workers", "3",
        workers=(kinds,),
    )  # fmt: skip
    for _ in range(40):  # 40 ready would be 4 processes' worth (target 10 per process)
        body = {"capability": "text.upper", "input": {"text": "boom"}}
        assert run.http.post("/v1/tasks", json=body).status_code == 202

    def all_backing_off() -> dict[str, Any] | None:
        report: dict[str, Any] = run.http.get("/v1/status").json()
        queue = report["queue_health"]
        return report if queue["backing_off_tasks"] == 40 else None

    seen = run.wait_until(all_backing_off, timeout_s=60, what="40 retries backing off")
    queue = seen["queue_health"]
    assert queue["total_pending_tasks"] == 40
    assert queue["backing_off_by_capability"] == {"text.upper": 40}
    assert 'crank_queue_backing_off{capability="text.upper"} 40.0' in run.http.get("/metrics").text
    since = datetime.fromisoformat(seen["timestamp"])

    def decided_since() -> dict[str, Any] | None:
        decision = run.http.get("/v1/status").json().get("last_scaling_decision")
        later = decision and datetime.fromisoformat(decision["timestamp"]) > since
        return decision if later else None

    decision = run.wait_until(decided_since, timeout_s=60, what="a scaling decision")
    assert decision["decision_type"] != "scale_up", decision
    assert decision["target_workers"] <= decision["current_workers"], decision
    assert run.terminate() == 0


def test_prod_mode_adds_no_processes_for_tasks_no_worker_here_can_take(crank_run: Any) -> None:
    import httpx

    from crank.runtime.brokers import open_broker
    from crank.runtime.brokers.contract import TaskSpec

    from .conftest import HTTP_WORKERS

    missing = Path(__file__).resolve().parents[2] / "fixtures" / "health_workers"
    run = crank_run(
        "--mode", "prod", "--min-workers", "1", "--max-workers", "3",
        workers=(HTTP_WORKERS, missing / "missing_dependency"),
        start=False,
    )  # fmt: skip
    # queued for a worker that fails to load (its capability answers 503 over HTTP)
    producer = open_broker(run.broker_url)
    try:
        producer.submit_many([TaskSpec("broken.echo", {"text": str(i)}) for i in range(60)])
    finally:
        producer.close()
    run.start(ready=False)

    def decided() -> dict[str, Any] | None:
        try:
            report: dict[str, Any] = run.http.get("/v1/status").json()
        except httpx.HTTPError:
            return None
        failed = report["workers"].get("missing-dependency", {}).get("state") == "failed"
        decision = report.get("last_scaling_decision")
        return decision if failed and decision else None

    decision = run.wait_until(decided, timeout_s=60, what="a scaling decision")
    assert decision["decision_type"] != "scale_up", decision
    assert decision["target_workers"] == decision["current_workers"] == 1, decision
    assert "left out 60 tasks no worker here can take now: broken.echo (60)" in decision["reason"]
    assert len(run.workers()) == 1
    assert run.terminate() == 0


def test_a_pool_scaled_to_zero_starts_a_process_for_queued_work(crank_run: Any) -> None:
    # no process reports the worker while none runs: it is not known to be broken,
    # and a process started for the queue is what would load it
    run = crank_run("--mode", "prod", "--min-workers", "0", "--max-workers", "2")
    assert run.workers() == []
    task = run.http.post("/v1/tasks", json={"capability": "demo.echo", "input": {"text": "hi"}})
    assert task.status_code == 202
    done = run.wait_final(task.json()["id"], timeout_s=90)
    assert (done["status"], done["result"]) == ("succeeded", {"text": "hi"})
    decisions = [
        (e["decision_type"], e["current_workers"])
        for e in run.log_events()
        if e.get("event") == "scaling_decision"
    ]
    assert ("scale_up", 0) in decisions, decisions
    assert run.terminate() == 0
