"""Batching and per-process concurrency under ``crank run``: real worker processes, a
real HTTP server and clients, on SQLite and on Redis.

The fixture capabilities (tests/fixtures/batching_workers) answer with the size of
the batch each task ran in and the process that ran it. Their ``max_latency_ms`` is a
minute where a test needs full batches only, so what the test sees does not depend
on how fast this machine is; the gated handlers hold a batch (or a call) open until
the test creates the gate file.
"""

from __future__ import annotations

import json
import os
import re
import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

if TYPE_CHECKING:
    from collections.abc import Callable

    CrankRun = Any
    Starter = Callable[..., Any]

pytestmark = pytest.mark.slow

BATCHING = Path(__file__).resolve().parents[2] / "fixtures" / "batching_workers"
GATE_ENV = "CRANK_FIXTURE_GATE_DIR"


@pytest.fixture(params=["sqlite", "redis"])
def broker_args(request: pytest.FixtureRequest) -> tuple[str, ...]:
    if request.param == "sqlite":
        return ()  # crank_run's default: a SQLite file in the test's folder
    return ("--broker", str(request.getfixturevalue("redis_server")))


def submit(run: CrankRun, capability: str, data: dict[str, Any]) -> str:
    answer = run.http.post("/v1/tasks", json={"capability": capability, "input": data})
    assert answer.status_code == 202, answer.text
    task_id: str = answer.json()["id"]
    return task_id


def wait_all(run: CrankRun, ids: list[str]) -> list[dict[str, Any]]:
    return [run.wait_final(i) for i in ids]


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample of the Prometheus text ``text`` (0 when absent)."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.partition("}")[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_queued_tasks_and_synchronous_calls_run_in_full_batches(
    crank_run: Starter, broker_args: tuple[str, ...]
) -> None:
    run = crank_run(*broker_args, "--min-workers", "1", "--max-workers", "1", workers=(BATCHING,))
    # max_batch_size 4, max_latency_ms a minute: a batch runs only once it is full,
    # so 6 queued tasks and 2 synchronous calls make exactly two batches of four
    ids = [submit(run, "batching.square", {"n": n}) for n in range(5)]
    ids.append(submit(run, "batching.square", {"n": 5, "fail": True}))
    with ThreadPoolExecutor(2) as pool:
        calls = [
            pool.submit(
                httpx.post, f"{run.url}/v1/capabilities/batching.square", json={"n": n}, timeout=60
            )
            for n in (10, 11)
        ]
        answers = [call.result() for call in calls]
    assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
    assert sorted(a.json()["square"] for a in answers) == [100, 121]
    assert {a.json()["batch_size"] for a in answers} == {4}

    # a capability without batching, served by the same process, one task at a time
    echo = run.http.post("/v1/capabilities/plain.echo", json={"text": "beside the batches"})
    assert echo.json() == {"text": "beside the batches"}

    results = wait_all(run, ids)
    # the item that answered an error failed alone; its batch's other items succeeded
    assert [r["status"] for r in results] == ["succeeded"] * 5 + ["failed"]
    assert results[5]["error"]["code"] == "REFUSED"
    assert [r["result"]["square"] for r in results[:5]] == [0, 1, 4, 9, 16]
    assert {r["result"]["batch_size"] for r in results[:5]} == {4}
    assert [r["result"]["task_id"] for r in results[:5]] == ids[:5]

    metrics = run.http.get("/metrics").text
    assert metric(metrics, "crank_batches_total", capability="batching.square", reason="full") == 2
    assert metric(metrics, "crank_batch_size_count", capability="batching.square") == 2
    assert metric(metrics, "crank_batch_size_sum", capability="batching.square") == 8
    assert metric(metrics, "crank_batch_wait_seconds_count", capability="batching.square") == 8
    status = run.http.get("/v1/status").json()["batching"]
    assert set(status) == {"batching.square"}
    square = status["batching.square"]
    assert {k: square[k] for k in ("batches", "tasks", "mean_batch_size", "released")} == {
        "batches": 2,
        "tasks": 8,
        "mean_batch_size": 4.0,
        "released": {"full": 2, "latency": 0, "deadline": 0},
    }
    assert square["mean_wait_ms"] >= 0
    assert run.terminate() == 0


def test_a_batch_that_cannot_fill_runs_after_max_latency_or_before_a_deadline(
    crank_run: Starter, broker_args: tuple[str, ...]
) -> None:
    run = crank_run(*broker_args, "--min-workers", "1", "--max-workers", "1", workers=(BATCHING,))
    # batching.soon: 1,000 per batch, 30 ms of latency: one task runs alone, soon
    soon = wait_all(run, [submit(run, "batching.soon", {"n": 3})])[0]
    assert (soon["status"], soon["result"]["square"], soon["result"]["batch_size"]) == (
        "succeeded",
        9,
        1,
    )
    # batching.deadline: a minute of latency but a 5 s timeout: the batch runs in time
    # for the deadline of its task instead of waiting a minute. (On a machine so busy
    # that the release comes too late, the attempt times out and is retried: still
    # released for its deadline, never after max_latency_ms.)
    late = wait_all(run, [submit(run, "batching.deadline", {"n": 4})])[0]
    assert (late["status"], late["result"]["square"]) == ("succeeded", 16)

    metrics = run.http.get("/metrics").text
    assert metric(metrics, "crank_batches_total", capability="batching.soon", reason="latency") == 1
    deadline = metric(
        metrics, "crank_batches_total", capability="batching.deadline", reason="deadline"
    )
    assert deadline == late["attempts"]
    status = run.http.get("/v1/status").json()["batching"]
    assert status["batching.soon"]["released"] == {"full": 0, "latency": 1, "deadline": 0}
    assert status["batching.deadline"]["released"] == {
        "full": 0,
        "latency": 0,
        "deadline": late["attempts"],
    }
    # each attempt waited less than its 5 s timeout; batching.soon its 30 ms of latency
    assert status["batching.deadline"]["mean_wait_ms"] < 5000
    assert status["batching.soon"]["mean_wait_ms"] >= 30
    assert run.terminate() == 0


def batches_held(gate: Path) -> dict[int, list[str]]:
    """pid -> the task ids of the batch that process runs, from the gated handler's markers."""
    held = {}
    for marker in gate.glob("batch-*.json"):
        pid = int(marker.name.split("-")[1])
        held[pid] = json.loads(marker.read_text())
    return held


def test_kill_9_in_the_middle_of_a_batch_redelivers_each_of_its_tasks(
    crank_run: Starter, broker_args: tuple[str, ...], tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    gate.mkdir()
    run = crank_run(
        *broker_args, "--min-workers", "2", "--max-workers", "2",
        workers=(BATCHING,), env={GATE_ENV: str(gate)},
    )  # fmt: skip
    ids = [submit(run, "batching.gated", {"n": n}) for n in range(8)]
    # two full batches of four, one in each process, both held at the gate
    held = run.wait_until(lambda: len(b := batches_held(gate)) == 2 and b, what="two batches")
    victim = min(held)
    assert victim in run.workers()
    os.kill(victim, signal.SIGKILL)
    (gate / "open").touch()

    results = {r["id"]: r for r in wait_all(run, ids)}
    assert {r["status"] for r in results.values()} == {"succeeded"}, results
    assert sorted(r["result"]["square"] for r in results.values()) == [n * n for n in range(8)]
    for task_id in held[victim]:
        # each task of the killed batch ran again, in another process
        assert results[task_id]["attempts"] >= 2
        assert results[task_id]["result"]["pid"] != victim
    survivor = max(held)
    for task_id in held[survivor]:
        assert results[task_id]["attempts"] == 1
        assert results[task_id]["result"]["pid"] == survivor
    assert run.terminate() == 0


def test_kill_9_while_tasks_wait_for_their_batch_loses_none(
    crank_run: Starter, broker_args: tuple[str, ...], tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    gate.mkdir()
    (gate / "open").touch()
    run = crank_run(
        *broker_args, "--min-workers", "1", "--max-workers", "1",
        workers=(BATCHING,), env={GATE_ENV: str(gate)},
    )  # fmt: skip
    ids = [submit(run, "batching.gated", {"n": n}) for n in range(3)]
    # three of four: claimed by the only process, waiting for a fourth to fill the batch
    run.wait_until(
        lambda: all(run.http.get(f"/v1/tasks/{i}").json()["status"] == "running" for i in ids),
        what="three tasks waiting in their batch",
    )
    [victim] = run.workers()
    os.kill(victim, signal.SIGKILL)
    run.wait_until(lambda: run.workers() and run.workers() != [victim], what="a replacement")
    ids.append(submit(run, "batching.gated", {"n": 3}))
    results = wait_all(run, ids)
    assert [r["status"] for r in results] == ["succeeded"] * 4
    assert [r["result"]["square"] for r in results] == [0, 1, 4, 9]
    assert all(r["attempts"] >= 2 for r in results[:3])
    assert {r["result"]["batch_size"] for r in results} == {4}
    assert run.terminate() == 0


def test_an_async_capability_runs_50_tasks_at_once_in_each_process(
    crank_run: Starter, broker_args: tuple[str, ...], tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    gate.mkdir()
    run = crank_run(
        *broker_args, "--min-workers", "2", "--max-workers", "2",
        workers=(BATCHING,), env={GATE_ENV: str(gate)},
    )  # fmt: skip
    ids = [submit(run, "concurrent.gated", {}) for _ in range(120)]

    def running_per_process() -> dict[int, int]:
        counts: dict[int, int] = {}
        for marker in gate.glob("running-*"):
            pid = int(marker.name.split("-")[1])
            counts[pid] = counts.get(pid, 0) + 1
        return counts

    # concurrency: 50, two processes: 100 calls wait at the gate at once, 50 in each,
    # and the other 20 wait in the queue
    counts = run.wait_until(
        lambda: sum((c := running_per_process()).values()) == 100 and c, what="100 calls running"
    )
    assert sorted(counts.values()) == [50, 50]
    pending = [i for i in ids if run.http.get(f"/v1/tasks/{i}").json()["status"] == "pending"]
    assert len(pending) == 20
    (gate / "open").touch()
    results = wait_all(run, ids)
    assert {r["status"] for r in results} == {"succeeded"}
    peaks: dict[int, int] = {}
    for r in results:
        pid = r["result"]["pid"]
        peaks[pid] = max(peaks.get(pid, 0), r["result"]["peak"])
    assert sorted(peaks.values()) == [50, 50]
    assert run.terminate() == 0


def test_each_concurrent_task_keeps_its_own_deadline(
    crank_run: Starter, broker_args: tuple[str, ...], tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    gate.mkdir()  # never opened: each call waits until its own 1 s timeout
    run = crank_run(
        *broker_args, "--min-workers", "1", "--max-workers", "1",
        workers=(BATCHING,), env={GATE_ENV: str(gate)},
    )  # fmt: skip
    # concurrency 5: five calls wait at once, each until its own deadline
    ids = [submit(run, "concurrent.late", {}) for _ in range(5)]
    results = wait_all(run, ids)
    assert [(r["status"], r["error"]["code"]) for r in results] == [("dead", "TIMEOUT")] * 5
    # their places were given back: five more run once the gate is open
    (gate / "open").touch()
    again = wait_all(run, [submit(run, "concurrent.late", {}) for _ in range(5)])
    assert [r["status"] for r in again] == ["succeeded"] * 5
    assert run.terminate() == 0


def ended(run: CrankRun, task_id: str) -> dict[str, Any]:
    done = ("succeeded", "failed", "dead", "cancelled")
    doc: dict[str, Any] = run.wait_until(
        lambda: (d := run.http.get(f"/v1/tasks/{task_id}").json())["status"] in done and d,
        what=f"task {task_id} to end",
    )
    return doc


def test_cancelling_a_concurrent_task_stops_it_alone(
    crank_run: Starter, broker_args: tuple[str, ...], tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    gate.mkdir()
    run = crank_run(
        *broker_args, "--min-workers", "1", "--max-workers", "1",
        workers=(BATCHING,), env={GATE_ENV: str(gate)},
    )  # fmt: skip
    ids = [submit(run, "concurrent.gated", {}) for _ in range(3)]
    run.wait_until(lambda: len(list(gate.glob("running-*"))) == 3, what="three calls running")
    stopping = run.http.delete(f"/v1/tasks/{ids[1]}")
    assert stopping.status_code == 202, stopping.text
    # stopped at its await while the two others still wait at the gate
    assert ended(run, ids[1])["status"] == "cancelled"
    assert [run.http.get(f"/v1/tasks/{i}").json()["status"] for i in ids] == [
        "running",
        "cancelled",
        "running",
    ]
    (gate / "open").touch()
    assert [ended(run, i)["status"] for i in (ids[0], ids[2])] == ["succeeded"] * 2
    assert run.terminate() == 0


def test_a_task_cancelled_while_it_waits_for_its_batch_never_runs(
    crank_run: Starter, broker_args: tuple[str, ...], tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    gate.mkdir()
    (gate / "open").touch()
    run = crank_run(
        *broker_args, "--min-workers", "1", "--max-workers", "1",
        workers=(BATCHING,), env={GATE_ENV: str(gate)},
    )  # fmt: skip
    ids = [submit(run, "batching.gated", {"n": n}) for n in range(3)]
    run.wait_until(
        lambda: all(run.http.get(f"/v1/tasks/{i}").json()["status"] == "running" for i in ids),
        what="three tasks waiting in their batch",
    )
    assert run.http.delete(f"/v1/tasks/{ids[0]}").status_code == 202
    run.wait_until(
        lambda: f"task {ids[0]} was cancelled before it started" in run.log(),
        what="the worker process to hear of the cancel",
    )
    ids.append(submit(run, "batching.gated", {"n": 3}))  # fills the batch of four
    results = [ended(run, i) for i in ids]
    assert [r["status"] for r in results] == ["cancelled"] + ["succeeded"] * 3
    # it was taken out of the batch before the handler ran: the others ran as three
    assert [r["result"]["batch_size"] for r in results[1:]] == [3, 3, 3]
    assert not [m for m in gate.glob("batch-*.json") if ids[0] in m.read_text()]
    assert run.terminate() == 0
