"""``crank run`` as a real process: HTTP end to end, dead workers, SIGTERM, ``crank status``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from crank.runtime.brokers import open_broker
from crank.runtime.brokers.contract import TaskSpec

from .conftest import CRANK_MAIN, HTTP_WORKERS, LIMITED_WORKERS

if TYPE_CHECKING:
    from collections.abc import Callable

    CrankRun = Any
    Starter = Callable[..., Any]

pytestmark = pytest.mark.slow


LIMITED = LIMITED_WORKERS


def test_http_end_to_end_with_worker_processes(
    crank_run: Starter, capsys: pytest.CaptureFixture[str]
) -> None:
    run = crank_run("--min-workers", "2", "--max-workers", "2")
    assert len(run.workers()) == 2
    accepted = run.http.post(
        "/v1/tasks", json={"capability": "demo.echo", "input": {"text": "hello"}}
    )
    assert accepted.status_code == 202
    done = run.wait_final(accepted.json()["id"])
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


def test_metrics_say_an_empty_queue_is_empty_for_every_served_capability(
    crank_run: Starter,
) -> None:
    # a depth series that vanished as its queue drained reads as "no data", not as 0
    run = crank_run()
    accepted = run.http.post("/v1/tasks", json={"capability": "demo.echo", "input": {"text": "a"}})
    assert run.wait_final(accepted.json()["id"])["status"] == "succeeded"

    def drained() -> str | None:
        text: str = run.http.get("/metrics").text
        return text if "crank_tasks_running 0.0" in text else None

    metrics = run.wait_until(drained, what="an empty queue on /metrics")
    for capability in ("demo.echo", "demo.slow", "demo.count", "demo.summarize"):
        assert f'crank_queue_depth{{capability="{capability}"}} 0.0' in metrics
        assert f'crank_queue_backing_off{{capability="{capability}"}} 0.0' in metrics
    assert run.terminate() == 0


def test_dead_worker_is_replaced_and_its_task_completes(crank_run: Starter, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    gate.mkdir()
    run = crank_run(
        "--min-workers", "1", "--max-workers", "1",
        workers=(HTTP_WORKERS, LIMITED),
        env={"CRANK_GRACE_S": "5", "CRANK_FIXTURE_GATE_DIR": str(gate)},
    )  # fmt: skip
    (victim,) = run.workers()
    task = run.http.post("/v1/tasks", json={"capability": "limited.hold", "input": {}}).json()
    # the call holds its worker at the gate: the kill below interrupts it, always
    run.wait_until(lambda: (gate / f"running-{task['id']}").exists(), what="task running")
    os.kill(victim, signal.SIGKILL)
    replacement = run.wait_until(
        lambda: [p for p in run.workers() if p != victim], what="replacement worker"
    )
    assert replacement and victim not in run.workers()
    # the supervisor gave the task back when it saw the death (not the 30 s visibility
    # timeout): the new process runs it again as its second attempt
    run.wait_until(
        lambda: run.http.get(f"/v1/tasks/{task['id']}").json()["attempts"] == 2,
        what="the task redelivered",
    )
    (died,) = [e for e in run.log_events() if e.get("event") == "worker_died"]
    assert (died["pid"], died["exit_code"], died["recovered_tasks"]) == (
        victim,
        -signal.SIGKILL,
        1,
    )
    (gate / "open").touch()
    done = run.wait_final(task["id"])
    assert (done["status"], done["attempts"]) == ("succeeded", 2)
    # a process killed a moment ago is a crash the status report owns up to
    health = run.http.get("/v1/status").json()
    assert health["worker_pool_health"]["failed_workers"] == 1
    assert health["problems"] == ["1 worker process(es) crashed in the last 300 s"]
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
        done = again.wait_final(tid)
        assert done["status"] == "succeeded"
    assert again.terminate(signal.SIGINT) == 0


def _gone(pids: list[int]) -> bool:
    """Every process in ``pids`` has exited (a zombie waiting to be reaped counts)."""
    for pid in pids:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        if stat[0] != "Z":
            return False
    return True


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_kill_9_of_crank_run_with_tasks_queued_and_running_loses_none(
    crank_run: Starter, request: pytest.FixtureRequest, backend: str
) -> None:
    broker_args: tuple[str, ...] = ()
    if backend == "redis":
        broker_args = ("--broker", request.getfixturevalue("redis_server"))
    pool = ("--min-workers", "2", "--max-workers", "2", *broker_args)
    run = crank_run(*pool, env={"CRANK_GRACE_S": "60"}, start=False)
    # queued before the workers start, more than the two can hold (a batch of 8 and a
    # prefetch of 8 each): the rest wait while the slow tasks run, seconds in all;
    # submitted one by one to a running pool they could all be claimed before the
    # status (cached for a second) showed any of them queued
    producer = open_broker(run.broker_url)
    try:
        ids = [
            record.id
            for record in producer.submit_many(
                # every task slow: the two hold 32, and the other 28 stay queued until
                # 28 have run, 0.4 s each on two workers: the status can see tasks
                # running and queued for at least 5.6 s however slow this machine is
                # (with a third of them slow, the queue could empty within a second of
                # the workers starting: before the first look at the status)
                [TaskSpec("demo.slow", {"seconds": 0.4}) for _ in range(60)]
            )
        ]
    finally:
        producer.close()
    run.start()

    def running_and_queued() -> bool:
        queue = run.http.get("/v1/status").json()["queue_health"]
        return bool(queue["running_tasks"] > 0 and queue["total_pending_tasks"] > 0)

    run.wait_until(running_and_queued, what="tasks running and tasks still queued")
    workers = run.workers()
    assert run.terminate(signal.SIGKILL) == -signal.SIGKILL
    # its worker processes do not outlive it: they finish what runs and give back the rest
    run.wait_until(lambda: _gone(workers), what="worker processes to stop after crank run died")
    # the kernel may send a worker its parent-death signal more than once (as the orphan
    # is handed on): each is the one graceful stop, none cuts the grace period short
    assert "stopping now" not in run.log(), run.log()[-4000:]
    broker = open_broker(run.broker_url)
    try:
        left = [tid for tid in ids if broker.get(tid).status != "succeeded"]  # type: ignore[union-attr]
    finally:
        broker.close()
    assert left, "every task finished before the kill: nothing was tested"
    # a restart on the same queue completes every task; each ran once (what was
    # running finished during the drain, what was claimed unrun went back unspent)
    again = crank_run(*pool)
    for tid in ids:
        done = again.wait_final(tid)
        assert (done["status"], done["attempts"]) == ("succeeded", 1), done
    assert again.terminate() == 0


def test_a_broker_option_out_of_range_stops_crank_run_before_it_opens_the_queue(
    tmp_path: Path,
) -> None:
    url = "sqlite:///queue.db?result_ttl_s=-5"
    done = subprocess.run(
        [sys.executable, "-c", CRANK_MAIN, "run", "--port", "1", "--broker", url],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines()[:2] == [
        f"error: broker URL {url!r} cannot be used: option result_ttl_s='-5' is out of range",
        "  hint: result_ttl_s must be a number of seconds above 0",
    ]
    assert not (tmp_path / "queue.db").exists()


def test_an_unusable_usage_file_stops_crank_run_with_what_to_do(tmp_path: Path) -> None:
    (tmp_path / "usage.db").write_text("not a database " * 200)
    done = subprocess.run(
        [sys.executable, "-c", CRANK_MAIN, "run", "--port", "1", "--worker", str(HTTP_WORKERS)],
        cwd=tmp_path,
        env={**os.environ, "CRANK_USAGE_DB": "usage.db"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert "error: cannot open the LLM usage file usage.db: file is not a database\n" in done.stderr
    assert "  hint: set CRANK_USAGE_DB to a SQLite file in a writable folder" in done.stderr
    assert "Traceback" not in done.stderr
