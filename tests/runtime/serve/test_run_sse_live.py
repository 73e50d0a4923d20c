"""Server-Sent Events reach the client while the handler still runs (real ``crank run``).

The handler emits step 1, then waits for a file that this test creates only
after it has read step 1 over HTTP; step 2 says whether the gate was opened.
Were events sent only once the task finished, step 1 could not be read before
the gate opens: the handler would wait out its bound and report ``false``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ..conftest import sse_frames

LIVE_WORKER = Path(__file__).resolve().parent / "live_stream_worker"


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_sse_events_arrive_while_the_task_runs(
    crank_run: Any, request: pytest.FixtureRequest, tmp_path: Path, backend: str
) -> None:
    args = ["--worker", str(LIVE_WORKER), "--min-workers", "1", "--max-workers", "1"]
    if backend == "redis":
        args = ["--broker", request.getfixturevalue("redis_server"), *args]
    run = crank_run(*args)
    gate = tmp_path / "gate-open"
    seen: list[dict[str, str]] = []
    with run.http.stream(
        "POST",
        "/v1/capabilities/demo.gated",
        json={"gate": str(gate)},
        headers={"Accept": "text/event-stream"},
    ) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        task_id = r.headers["x-crank-task-id"]
        frames = sse_frames(r.iter_lines())
        first = next(frames)
        # step 1 is here and the handler is still waiting at the gate
        assert first == {"id": "1", "event": "message", "data": '{"step": 1}'}
        assert not gate.exists()
        task = run.http.get(f"/v1/tasks/{task_id}").json()
        assert task["status"] == "running"
        gate.touch()
        seen = list(frames)
    assert seen[0] == {
        "id": "2",
        "event": "message",
        "data": json.dumps({"step": 2, "gate_opened": True}),
    }
    assert seen[1]["event"] == "end"
    assert json.loads(seen[1]["data"]) == {"id": task_id, "events": 2}
    assert len(seen) == 2
    # the task's result still holds every event
    done = run.http.get(f"/v1/tasks/{task_id}").json()
    assert done["result"] == [{"step": 1}, {"step": 2, "gate_opened": True}]
