"""Task control through ``crank run`` (real processes, SQLite and Redis): a task cancelled
while pending never runs, a running one sees ``ctx.cancelled``, a redriven dead letter
runs again and succeeds once its cause is gone, and the list reads the broker, so it
survives a restart."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from ..conftest import FIXTURE_WORKERS

if TYPE_CHECKING:
    from pathlib import Path

    from .conftest import CrankRun

pytestmark = pytest.mark.slow


@pytest.fixture(params=["sqlite", "redis"])
def broker_args(request: pytest.FixtureRequest) -> list[str]:
    """``crank run`` arguments naming the broker: its SQLite file, or a private Redis."""
    if request.param == "sqlite":
        return []
    return ["--broker", str(request.getfixturevalue("redis_server"))]


def one_worker(crank_run: Any, broker_args: list[str]) -> CrankRun:
    """``crank run`` with one worker process serving the runtime fixture worker."""
    run: CrankRun = crank_run(
        *broker_args,
        "--worker", str(FIXTURE_WORKERS),
        "--min-workers", "1", "--max-workers", "1",
        fixture_workers=False,
    )  # fmt: skip
    return run


def queue(run: CrankRun, capability: str, payload: dict[str, Any]) -> str:
    answer = run.http.post("/v1/tasks", json={"capability": capability, "input": payload})
    assert answer.status_code == 202, answer.text
    return str(answer.json()["id"])


def ended(run: CrankRun, task_id: str) -> dict[str, Any]:
    final = ("succeeded", "failed", "dead", "cancelled")
    doc: dict[str, Any] = run.wait_until(
        lambda: (d := run.http.get(f"/v1/tasks/{task_id}").json())["status"] in final and d,
        what=f"task {task_id} to end",
    )
    return doc


def test_cancel_a_pending_and_a_running_task(
    crank_run: Any, broker_args: list[str], tmp_path: Path
) -> None:
    run = one_worker(crank_run, broker_args)
    started, stopped, marks = tmp_path / "started", tmp_path / "stopped", tmp_path / "marks"
    busy = queue(run, "fixture.until_cancelled", {"started": str(started), "stopped": str(stopped)})
    run.wait_until(started.exists, what="the only worker to be busy")
    waiting = queue(run, "fixture.mark", {"path": str(marks)})

    cancelled = run.http.delete(f"/v1/tasks/{waiting}")
    assert cancelled.status_code == 200, cancelled.text
    assert (cancelled.json()["outcome"], cancelled.json()["status"]) == ("cancelled", "cancelled")

    stopping = run.http.delete(f"/v1/tasks/{busy}")
    assert stopping.status_code == 202, stopping.text
    assert (stopping.json()["outcome"], stopping.json()["status"]) == ("stopping", "running")
    done = ended(run, busy)
    assert done["status"] == "cancelled"
    assert done["error"]["message"] == "cancelled while it ran"
    assert stopped.read_text() == busy  # the handler saw ctx.cancelled
    # what the handler raised: asked to stop, not out of time
    assert done["error"]["cause"] == {
        "code": "CANCELLED",
        "message": f"task {busy} (fixture.until_cancelled) was cancelled while it ran",
        "type": "TaskCancelled",
    }

    after = queue(run, "fixture.mark", {"path": str(marks)})
    assert ended(run, after)["status"] == "succeeded"
    assert marks.read_text().split() == [after]  # the cancelled task never ran
    assert ended(run, waiting)["attempts"] == 0
    listed = run.http.get("/v1/tasks", params={"status": "cancelled"}).json()["tasks"]
    assert [t["id"] for t in listed] == [waiting, busy]  # newest first
    assert "Traceback" not in run.log()


def test_a_redriven_dead_letter_runs_again_and_succeeds_once_its_cause_is_gone(
    crank_run: Any, broker_args: list[str], tmp_path: Path
) -> None:
    run = one_worker(crank_run, broker_args)
    needed = tmp_path / "needed"
    first, second = (queue(run, "fixture.needs_file", {"path": str(needed)}) for _ in range(2))
    for task_id in (first, second):
        dead = ended(run, task_id)
        assert dead["status"] == "dead"
        assert "does not exist" in dead["error"]["message"]
    listed = run.http.get("/v1/dead-letters", params={"capability": "fixture.needs_file"})
    assert [t["id"] for t in listed.json()["tasks"]] == [second, first]

    # still broken: redriven, it dies again
    assert run.http.post(f"/v1/dead-letters/{first}/redrive").status_code == 200
    assert ended(run, first)["status"] == "dead"

    needed.write_text("here")  # the cause is gone
    answer = run.http.post(f"/v1/dead-letters/{first}/redrive")
    assert answer.status_code == 200, answer.text
    done = ended(run, first)
    assert (done["status"], done["result"], done["attempts"]) == (
        "succeeded",
        {"found": str(needed)},
        1,
    )
    bulk = run.http.post("/v1/capabilities/fixture.needs_file/dead-letters/redrive")
    assert bulk.json()["count"] == 1
    assert ended(run, second)["status"] == "succeeded"
    assert run.http.get("/v1/dead-letters").json()["tasks"] == []
    run.wait_until(
        lambda: run.http.get("/v1/status").json()["queue_health"]["dead_letters"] == 0,
        what="the dead-letter count to say none",
    )
