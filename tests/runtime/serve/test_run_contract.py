"""The API contract through ``crank run`` (real processes, real HTTP): idempotency keys
never hand a caller another request's task, and a client's fault is no dead letter."""

from __future__ import annotations

import json
import threading
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from collections.abc import Callable

    CrankRun = Any
    Starter = Callable[..., Any]

pytestmark = pytest.mark.slow


@pytest.fixture(params=["sqlite", "redis"])
def started(request: pytest.FixtureRequest, crank_run: Starter) -> CrankRun:
    if request.param == "redis":
        url = request.getfixturevalue("redis_server")
        return crank_run("--broker", url, "--min-workers", "2", "--max-workers", "2")
    return crank_run("--min-workers", "2", "--max-workers", "2")


def test_the_same_key_never_hands_out_another_requests_task(started: CrankRun) -> None:
    run = started
    key = "order-1"

    def submit(caller: str | None, capability: str, data: dict[str, Any]) -> Any:
        headers = {"Idempotency-Key": key}
        if caller is not None:
            headers["X-Crank-Caller"] = caller
        return run.http.post(
            "/v1/tasks", json={"capability": capability, "input": data}, headers=headers
        )

    alice = submit("alice", "demo.echo", {"text": "alice's"})
    bob = submit("bob", "demo.echo", {"text": "bob's"})
    assert alice.status_code == bob.status_code == 202
    alice_id, bob_id = alice.json()["id"], bob.json()["id"]
    assert alice_id != bob_id
    assert run.wait_final(alice_id)["result"] == {"text": "alice's"}
    assert run.wait_final(bob_id)["result"] == {"text": "bob's"}

    # alice retries: her own task; alice sends another input or capability: 409, nothing queued
    assert submit("alice", "demo.echo", {"text": "alice's"}).json()["id"] == alice_id
    for capability, data in (("demo.echo", {"text": "bob's"}), ("demo.slow", {"seconds": 0})):
        refused = submit("alice", capability, data)
        assert refused.status_code == 409, refused.text
        assert refused.json()["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"
        assert alice_id not in refused.text
        assert bob_id not in refused.text
    # the synchronous call with alice's key and input is her retry: her task's answer
    sync = run.http.post(
        "/v1/capabilities/demo.echo",
        json={"text": "alice's"},
        headers={"Idempotency-Key": key, "X-Crank-Caller": "alice"},
    )
    assert (sync.status_code, sync.json()) == (200, {"text": "alice's"})
    assert sync.headers["x-crank-task-id"] == alice_id
    # another capability through the synchronous route: refused before anything runs
    slow = run.http.post(
        "/v1/capabilities/demo.slow",
        json={"seconds": 0},
        headers={"Idempotency-Key": key, "X-Crank-Caller": "alice"},
    )
    assert slow.status_code == 409
    assert "x-crank-task-id" not in slow.headers


def test_concurrent_callers_sharing_a_key_each_get_their_own_answer(started: CrankRun) -> None:
    run = started
    answers: dict[str, Any] = {}
    barrier = threading.Barrier(6)

    def call(caller: str) -> None:
        barrier.wait()
        r = run.http.post(
            "/v1/capabilities/demo.echo",
            json={"text": f"from {caller}"},
            headers={"Idempotency-Key": "shared", "X-Crank-Caller": caller},
        )
        answers[caller] = (r.status_code, r.json(), r.headers.get("x-crank-task-id"))

    callers = [f"caller-{i}" for i in range(6)]
    threads = [threading.Thread(target=call, args=(c,)) for c in callers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert {c: answers[c][:2] for c in callers} == {
        c: (200, {"text": f"from {c}"}) for c in callers
    }
    assert len({answers[c][2] for c in callers}) == len(callers)
    # anonymous callers share one scope: the second input with the same key is refused
    first = run.http.post(
        "/v1/capabilities/demo.echo", json={"text": "one"}, headers={"Idempotency-Key": "anon"}
    )
    second = run.http.post(
        "/v1/capabilities/demo.echo", json={"text": "two"}, headers={"Idempotency-Key": "anon"}
    )
    assert (first.status_code, first.json()) == (200, {"text": "one"})
    assert second.status_code == 409


def test_a_refused_input_is_failed_not_a_dead_letter(
    crank_run: Starter, capsys: pytest.CaptureFixture[str]
) -> None:
    run = crank_run("--worker", "email-classifier", "--min-workers", "1", "--max-workers", "1")
    ids = []
    for _ in range(3):
        r = run.http.post("/v1/capabilities/email.spam_detection", json={"text": "0"})
        assert r.status_code == 422, r.text
        assert r.json()["error"]["code"] == "INVALID_INPUT"
        ids.append(r.headers["x-crank-task-id"])
    for task_id in ids:
        doc = run.wait_final(task_id)
        assert (doc["status"], doc["attempts"]) == ("failed", 1)
    report = run.http.get("/v1/status").json()
    assert report["queue_health"]["dead_letters"] == 0
    from crank.cli import main

    assert main(["status", "--url", run.url]) == 0
    assert json.loads(capsys.readouterr().out)["queue_health"]["dead_letters"] == 0
    metrics = run.wait_until(
        lambda: (
            (t := run.http.get("/metrics").text)
            and 'crank_tasks_total{capability="email.spam_detection",status="failed"} 3.0' in t
            and t
        ),
        what="the failed tasks counted by the worker",
    )
    assert "crank_dead_letters 0.0" in metrics
    assert 'crank_dead_lettered_total{capability="email.spam_detection"}' not in metrics


def test_a_task_whose_workers_kept_dying_is_counted_dead_by_the_worker_that_ends_it(
    crank_run: Starter,
) -> None:
    """A task delivered more than max_attempts times ends dead (WORKER_LOST) inside the
    next claim: no handler ran it to its end, and the process whose claim ended it
    counts it, so /metrics agrees with the dead letters (it counted nothing before)."""
    from crank.runtime.brokers.contract import ClaimOptions, TaskSpec
    from crank.runtime.brokers.sqlite import SqliteBroker

    run = crank_run("--min-workers", "1", "--max-workers", "1", start=False)
    queue = SqliteBroker(run.db)
    try:
        [task] = queue.submit_many([TaskSpec("demo.echo", {"text": "x"}, max_attempts=1)])
        # delivered once to a worker that died holding it: its lease runs out at once
        [held] = queue.claim(ClaimOptions("gone", visibility_timeout_s=0.001))
        assert held.task.id == task.id
    finally:
        queue.close()
    run.start()
    doc = run.wait_final(task.id)
    assert (doc["status"], doc["error"]["code"]) == ("dead", "WORKER_LOST")
    metrics = run.wait_until(
        lambda: (
            (t := run.http.get("/metrics").text)
            and 'crank_dead_lettered_total{capability="demo.echo"} 1.0' in t
            and t
        ),
        what="the dead letter counted by the worker that ended it",
    )
    assert 'crank_tasks_total{capability="demo.echo",status="dead"} 1.0' in metrics
    assert "crank_dead_letters 1.0" in metrics
