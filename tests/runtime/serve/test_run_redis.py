"""``crank run --broker redis://...`` against a private redis-server."""

from __future__ import annotations

import os
import signal
from typing import Any

import pytest

pytestmark = pytest.mark.slow


def test_redis_streams_broker_end_to_end(crank_run: Any, redis_server: str) -> None:
    run = crank_run("--broker", redis_server, "--min-workers", "2", "--max-workers", "2")
    assert run.http.post("/v1/capabilities/demo.echo", json={"text": "via redis"}).json() == {
        "text": "via redis"
    }
    task = run.http.post("/v1/tasks", json={"capability": "demo.slow", "input": {"seconds": 1.0}})
    task_id = task.json()["id"]
    run.wait_until(
        lambda: run.http.get(f"/v1/tasks/{task_id}").json()["status"] == "running", what="running"
    )
    for pid in run.workers():
        os.kill(pid, signal.SIGKILL)
    done = run.wait_until(
        lambda: (d := run.http.get(f"/v1/tasks/{task_id}").json())["status"] == "succeeded" and d,
        what="task recovered after every worker was killed",
    )
    assert done["result"] == {"slept": 1.0}
    assert len(run.workers()) == 2
    report = run.wait_until(
        lambda: (
            (r := run.http.get("/v1/status").json())["worker_pool_health"]["healthy_workers"] == 2
            and r
        ),
        what="both replacements reporting",
    )
    # replaced and serving, and the two kills a moment ago are owned up to
    assert report["worker_pool_health"]["failed_workers"] == 2
    assert (report["overall_health"], report["problems"]) == (
        "degraded",
        ["2 worker process(es) crashed in the last 300 s"],
    )
    assert run.terminate(signal.SIGTERM) == 0
