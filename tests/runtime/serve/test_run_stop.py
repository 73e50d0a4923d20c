"""Stopping ``crank run``: one signal gives every worker process its grace period, every
process alike; a second one cuts it everywhere and the running tasks go back."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from crank.runtime.brokers import open_broker

from .conftest import HTTP_WORKERS, LIMITED_WORKERS

if TYPE_CHECKING:
    from collections.abc import Callable

    CrankRun = Any
    Starter = Callable[..., Any]

pytestmark = pytest.mark.slow

LIMITED = LIMITED_WORKERS
#: what a worker process logs when the first stop signal reaches it.
FIRST_STOP = "on SIGTERM: finishing the running task"


def _hold(run: CrankRun, gate: Path, count: int) -> list[str]:
    """Submit ``count`` tasks that run until ``gate/open`` exists; once all of them run."""
    ids = []
    for _ in range(count):
        r = run.http.post("/v1/tasks", json={"capability": "limited.hold", "input": {}})
        assert r.status_code == 202, r.text
        ids.append(r.json()["id"])
    run.wait_until(
        lambda: all((gate / f"running-{tid}").exists() for tid in ids), what="the tasks running"
    )
    return ids


def _statuses(run: CrankRun, ids: list[str]) -> list[tuple[str, int]]:
    broker = open_broker(run.broker_url)
    try:
        records = [broker.get(tid) for tid in ids]
    finally:
        broker.close()
    return [(r.status, r.attempts) if r else ("lost", 0) for r in records]


def test_one_sigterm_gives_replacement_workers_their_whole_grace(
    crank_run: Starter, tmp_path: Path
) -> None:
    # Replacements are started by the supervisor's monitor thread, which ends as the
    # pool stops; the kernel's parent-death signal fires when the *thread* that started
    # a process exits. Taken for a first stop signal, it made the one SIGTERM that
    # follows a "second" one: the running task was cut off and given back.
    gate = tmp_path / "gate"
    gate.mkdir()
    run = crank_run(
        "--min-workers", "2", "--max-workers", "2",
        workers=(HTTP_WORKERS, LIMITED),
        env={"CRANK_GRACE_S": "120", "CRANK_FIXTURE_GATE_DIR": str(gate)},
    )  # fmt: skip
    first = run.workers()
    assert len(first) == 2
    for pid in first:
        os.kill(pid, signal.SIGKILL)
    run.wait_until(
        lambda: len([p for p in run.workers() if p not in first]) == 2,
        what="two replacement workers",
    )
    run.wait_ready()
    ids = _hold(run, gate, 2)
    run.proc.send_signal(signal.SIGTERM)
    # both replacements heard the stop (or one was cut off: the old failure)
    run.wait_until(
        lambda: run.log().count(FIRST_STOP) >= 2 or "stopping now" in run.log(),
        what="both workers stopping",
    )
    (gate / "open").touch()
    assert run.proc.wait(timeout=120) == 0
    log = run.log()
    assert "stopping now" not in log, log[-4000:]
    assert _statuses(run, ids) == [("succeeded", 1)] * 2, log[-4000:]


@pytest.mark.parametrize("http_processes", ["1", "2"])
def test_a_second_ctrl_c_stops_the_workers_at_once_and_gives_their_tasks_back(
    crank_run: Starter, tmp_path: Path, http_processes: str
) -> None:
    gate = tmp_path / "gate"
    gate.mkdir()
    run = crank_run(
        "--min-workers", "1", "--max-workers", "1", "--http-processes", http_processes,
        workers=(HTTP_WORKERS, LIMITED),
        env={"CRANK_GRACE_S": "600", "CRANK_FIXTURE_GATE_DIR": str(gate)},
    )  # fmt: skip
    ids = _hold(run, gate, 1)
    run.proc.send_signal(signal.SIGINT)
    run.wait_until(lambda: "finishing the running task" in run.log(), what="the worker stopping")
    run.proc.send_signal(signal.SIGINT)
    # far inside the grace period: nobody waits for the task any longer
    assert run.proc.wait(timeout=120) == 0
    log = run.log()
    assert "stopping now (a second stop signal)" in log, log[-4000:]
    # the worker counted its last task before the metrics directory was removed
    assert "Traceback" not in log, log[-4000:]
    assert "task_finished hook of plugin" not in log, log[-4000:]
    # back in the queue, its attempt not spent
    assert _statuses(run, ids) == [("pending", 0)], log[-4000:]


def _running(pid: int) -> bool:
    """Whether ``pid`` is a process that has not ended (a zombie has ended)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_a_killed_runs_private_directory_is_removed_by_the_next_run(
    crank_run: Starter, tmp_path: Path
) -> None:
    # Each crank run keeps its processes' metrics files and concurrency slots in a
    # directory of its own under TMPDIR. A kill -9 left it behind: a service restarted
    # after every crash filled the temporary directory, two directories per crash.
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {"TMPDIR": str(tmp)}
    first = crank_run("--http-processes", "2", env=env, db="first.db")
    [first_dir] = tmp.glob("crank-run-*")
    assert (first_dir / "metrics").is_dir()
    assert (first_dir / "slots").is_dir()
    children = first.workers()  # the worker processes and the two HTTP processes
    assert len(children) >= 3, children
    os.kill(first.pid, signal.SIGKILL)
    first.proc.wait(timeout=60)
    # its children see their parent gone, drain and end; until then the directory is
    # theirs (a second run started meanwhile leaves it)
    first.wait_until(lambda: not any(_running(pid) for pid in children), what="children ended")
    second = crank_run(env=env, db="second.db")
    assert not first_dir.exists()
    [second_dir] = tmp.glob("crank-run-*")
    assert second.http.get("/metrics").status_code == 200
    assert second.terminate() == 0
    assert list(tmp.glob("crank-run-*")) == [], second_dir
