"""``crank run``: ``GET /v1/tasks/{id}?wait=`` waits for the task's end, woken by its notice.

The waiters' safety poll is turned off (``CRANK_RESULT_SAFETY_POLL_S`` set to an hour),
so a long-poll that answers an ended task before its wait ran out was woken by the
notice pushed when the task ended (SQLite: the local channel from the worker
processes; Redis: the server's subscription). The task waits at a gate the test
opens only once the long-poll watches it (the watch is in the broker), so the end
always comes while the request waits.
"""

from __future__ import annotations

import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from .conftest import HTTP_WORKERS

pytestmark = pytest.mark.slow

NO_POLL = {"CRANK_RESULT_SAFETY_POLL_S": "3600"}
CLIENT_WORKER = Path(__file__).resolve().parents[2] / "fixtures" / "client_worker"
#: the longest wait the server allows (seconds).
LONGEST_WAIT = 55


def _start(backend: str, crank_run: Any, request: pytest.FixtureRequest) -> Any:
    args: tuple[str, ...] = ("--min-workers", "1", "--max-workers", "1")
    if backend == "redis":
        args = ("--broker", request.getfixturevalue("redis_server"), *args)
    return crank_run(*args, env=NO_POLL, workers=(HTTP_WORKERS, CLIENT_WORKER))


def _watchers(run: Any, task_id: str) -> int:
    """How many processes the broker will tell when the task ends."""
    if run.broker_url.startswith("redis://"):
        with redis.Redis.from_url(run.broker_url) as r:
            return int(r.scard(f"crank:w:{task_id}"))
    with sqlite3.connect(run.db) as db:
        [count] = db.execute(
            "SELECT count(*) FROM task_waiters WHERE task_id = ?", (task_id,)
        ).fetchone()
    return int(count)


def _long_poll(url: str, task_id: str, wait: float) -> tuple[int, Any, float]:
    started = time.monotonic()
    with httpx.Client(base_url=url, timeout=LONGEST_WAIT + 60) as http:
        r = http.get(f"/v1/tasks/{task_id}", params={"wait": wait})
    return r.status_code, r.json(), time.monotonic() - started


def _gated(run: Any, gate: Path) -> str:
    body = {"capability": "client.gated", "input": {"gate": str(gate)}}
    r = run.http.post("/v1/tasks", json=body)
    assert r.status_code == 202, r.text
    task_id: str = r.json()["id"]
    return task_id


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_a_long_poll_is_answered_by_the_tasks_end(
    backend: str, crank_run: Any, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    run = _start(backend, crank_run, request)
    gate = tmp_path / "gate"
    task_id = _gated(run, gate)
    with ThreadPoolExecutor(max_workers=1) as pool:
        answer = pool.submit(_long_poll, run.url, task_id, LONGEST_WAIT)
        run.wait_until(lambda: _watchers(run, task_id) > 0, what="the long-poll watching")
        assert not answer.done()
        gate.touch()
        status, doc, took = answer.result(timeout=LONGEST_WAIT + 120)
    assert status == 200, doc
    assert doc["status"] == "succeeded"
    assert [event["step"] for event in doc["result"]] == [1, 2, 3, 4]
    assert doc["result"][2]["gate_opened"] is True  # it ended while the request waited
    # woken by the notice: the wait had not run out, and nothing else reads the task
    assert took < LONGEST_WAIT
    # the answer is read from the broker: what a plain GET shows
    assert run.http.get(f"/v1/tasks/{task_id}").json() == doc
    assert "Traceback" not in run.log()


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_a_long_poll_that_runs_out_answers_the_status_it_has(
    backend: str, crank_run: Any, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    run = _start(backend, crank_run, request)
    gate = tmp_path / "gate"
    task_id = _gated(run, gate)
    try:
        status, doc, took = _long_poll(run.url, task_id, 0.5)
    finally:
        gate.touch()
    # not an error: the task as it stands, still going on
    assert status == 200, doc
    assert doc["id"] == task_id
    assert doc["status"] in ("pending", "running")
    assert doc["result"] is None
    assert took >= 0.5
    # the watch it left is no trouble: the task ends and is read as usual
    done = run.wait_until(
        lambda: (d := run.http.get(f"/v1/tasks/{task_id}").json())["status"] == "succeeded" and d,
        what="the task's end",
    )
    assert len(done["result"]) == 4
    # an ended task is answered without waiting
    status, doc, took = _long_poll(run.url, task_id, LONGEST_WAIT)
    assert (status, doc) == (200, done)
    assert took < LONGEST_WAIT
    assert "Traceback" not in run.log()
