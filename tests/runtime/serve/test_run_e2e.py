"""``crank run`` as a real process: HTTP end to end, dead workers, SIGTERM, ``crank status``."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from crank.runtime.brokers import open_broker

if TYPE_CHECKING:
    from collections.abc import Callable

    CrankRun = Any
    Starter = Callable[..., Any]

pytestmark = pytest.mark.slow


def _done(run: CrankRun, task_id: str) -> dict[str, object] | None:
    doc = run.http.get(f"/v1/tasks/{task_id}").json()
    return doc if doc["status"] in ("succeeded", "failed", "dead") else None


def test_http_end_to_end_with_worker_processes(
    crank_run: Starter, capsys: pytest.CaptureFixture[str]
) -> None:
    run = crank_run("--min-workers", "2", "--max-workers", "2")
    assert len(run.workers()) == 2
    accepted = run.http.post(
        "/v1/tasks", json={"capability": "demo.echo", "input": {"text": "hello"}}
    )
    assert accepted.status_code == 202
    done = run.wait_until(lambda: _done(run, accepted.json()["id"]), what="async task")
    assert (done["status"], done["result"]) == ("succeeded", {"text": "hello"})
    assert run.http.post(
        "/v1/capabilities/demo.echo", json={"text": "x", "shout": True}
    ).json() == {"text": "X"}
    legacy = run.http.post("/echo", json={"text": "old"})
    assert (legacy.status_code, legacy.json(), "deprecation" in legacy.headers) == (
        200,
        {"text": "old"},
        True,
    )
    lines = []
    with run.http.stream(
        "POST",
        "/v1/capabilities/demo.count",
        json={"n": 3},
        headers={"Accept": "text/event-stream"},
    ) as r:
        lines = [line for line in r.iter_lines() if line.startswith('data: {"i"')]
    assert lines == ['data: {"i": 1}', 'data: {"i": 2}', 'data: {"i": 3}']

    # metrics of the worker processes (multiprocess mode) reach /metrics
    def worker_metrics() -> str | None:
        text = run.http.get("/metrics").text
        return (
            text if 'crank_tasks_total{capability="demo.echo",status="succeeded"}' in text else None
        )

    metrics = run.wait_until(worker_metrics, what="worker metrics")
    assert 'crank_workers{state="healthy"} 2.0' in metrics
    # crank status prints the report of the running server
    from crank.cli import main

    assert main(["status", "--url", run.url]) == 0
    report = __import__("json").loads(capsys.readouterr().out)
    assert report["overall_health"] == "healthy"
    assert report["worker_pool_health"]["total_workers"] == 2
    assert run.terminate() == 0


def test_dead_worker_is_replaced_and_its_task_completes(crank_run: Starter) -> None:
    run = crank_run("--min-workers", "1", "--max-workers", "1", env={"CRANK_GRACE_S": "5"})
    (victim,) = run.workers()
    task = run.http.post(
        "/v1/tasks", json={"capability": "demo.slow", "input": {"seconds": 1.5}}
    ).json()
    run.wait_until(
        lambda: run.http.get(f"/v1/tasks/{task['id']}").json()["status"] == "running",
        what="task running",
    )
    os.kill(victim, signal.SIGKILL)
    killed_at = time.monotonic()
    # nobody else runs it until the death is noticed: still running = the kill hit it
    interrupted = run.http.get(f"/v1/tasks/{task['id']}").json()["status"] == "running"
    replacement = run.wait_until(
        lambda: [p for p in run.workers() if p != victim], what="replacement worker"
    )
    replaced_after = time.monotonic() - killed_at
    done = run.wait_until(lambda: _done(run, task["id"]), what="recovered task")
    assert done["status"] == "succeeded"
    # (a stall of this test for the task's 1.5 s lets it finish before the kill)
    assert done["attempts"] >= 2 or not interrupted
    assert replacement and victim not in run.workers()
    print(f"worker replaced {replaced_after:.2f} s after kill -9")  # recorded, not asserted
    assert "worker_died" in run.log()
    assert run.terminate() == 0


def test_sigterm_drains_and_loses_nothing(crank_run: Starter) -> None:
    run = crank_run("--min-workers", "2", "--max-workers", "2", env={"CRANK_GRACE_S": "10"})
    ids = []
    for i in range(40):
        body = (
            {"capability": "demo.slow", "input": {"seconds": 0.3}}
            if i % 2
            else {"capability": "demo.echo", "input": {"text": str(i)}}
        )
        r = run.http.post("/v1/tasks", json=body)
        assert r.status_code == 202
        ids.append(r.json()["id"])
    run.wait_until(
        lambda: run.http.get("/v1/status").json()["queue_health"]["running_tasks"] > 0,
        what="work in flight",
    )
    assert run.terminate(signal.SIGTERM) == 0
    assert "crank_stopped" in run.log()
    broker = open_broker(run.broker_url)
    try:
        statuses = {tid: broker.get(tid).status for tid in ids}  # type: ignore[union-attr]
    finally:
        broker.close()
    assert set(statuses.values()) <= {"succeeded", "pending", "retrying"}, statuses
    # a second run on the same queue finishes every task: nothing was lost
    again = crank_run("--min-workers", "2", "--max-workers", "2")  # same tmp dir, same queue file
    for tid in ids:
        done = again.wait_until(lambda tid=tid: _done(again, tid), what=f"task {tid}")
        assert done["status"] == "succeeded"
    assert again.terminate(signal.SIGINT) == 0


def test_workers_do_not_outlive_a_killed_crank_run(crank_run: Starter) -> None:
    run = crank_run("--min-workers", "2", "--max-workers", "2")
    workers = run.workers()
    assert len(workers) == 2
    assert run.terminate(signal.SIGKILL) == -signal.SIGKILL

    def gone() -> bool:
        for pid in workers:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                continue
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            if stat[0] != "Z":
                return False
        return True

    run.wait_until(gone, what="worker processes to stop after their parent was killed")
