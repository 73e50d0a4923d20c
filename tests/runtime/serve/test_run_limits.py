"""``max_concurrency`` under ``crank run``: real worker processes, real HTTP and SSE clients.

The limited fixture capability (``limited.hold``, ``max_concurrency: 2``) marks
itself running, counts how many calls run when it starts, and holds its slot
until the test opens a gate: while it waits, "more than two at once" would be
visible in its markers and in the peak each call reports.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from ..conftest import sse_frames
from .conftest import CRANK_MAIN, HTTP_WORKERS, LIMITED_WORKERS

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    CrankRun = Any
    Starter = Callable[..., Any]

pytestmark = pytest.mark.slow

LIMITED = LIMITED_WORKERS


def running(gate: Path) -> int:
    return len(list(gate.glob("running-*")))


def test_queued_tasks_wait_for_a_slot_across_worker_processes(
    crank_run: Starter, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    gate.mkdir()
    run = crank_run(
        "--min-workers", "4", "--max-workers", "4",
        workers=(LIMITED, HTTP_WORKERS),
        env={"CRANK_FIXTURE_GATE_DIR": str(gate)},
    )  # fmt: skip
    ids = [
        run.http.post("/v1/tasks", json={"capability": "limited.hold", "input": {}}).json()["id"]
        for _ in range(6)
    ]
    run.wait_until(lambda: running(gate) == 2, what="two calls holding both slots")
    # Four processes, two of them held: a later echo completes only if the other two
    # keep claiming. Without the limit they would have taken the older limited
    # tasks first (oldest first) and be stuck at the gate too.
    echo = run.http.post("/v1/tasks", json={"capability": "demo.echo", "input": {"text": "e"}})
    done = run.wait_final(echo.json()["id"])
    assert done["status"] == "succeeded"
    assert running(gate) == 2
    statuses = sorted(run.http.get(f"/v1/tasks/{i}").json()["status"] for i in ids)
    assert statuses == ["pending"] * 4 + ["running"] * 2
    (gate / "open").touch()
    results = [run.wait_final(i) for i in ids]
    assert [r["status"] for r in results] == ["succeeded"] * 6
    assert max(r["result"]["peak"] for r in results) == 2
    assert run.terminate() == 0


def test_synchronous_calls_past_the_limit_get_429(crank_run: Starter, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    gate.mkdir()
    run = crank_run(
        "--min-workers", "3", "--max-workers", "3",
        workers=(LIMITED,),
        env={"CRANK_FIXTURE_GATE_DIR": str(gate)},
    )  # fmt: skip
    answers: list[httpx.Response] = []

    def call() -> None:
        with httpx.Client(base_url=run.url, timeout=120) as client:
            answers.append(client.post("/v1/capabilities/limited.hold", json={}))

    callers = [threading.Thread(target=call) for _ in range(2)]
    for caller in callers:
        caller.start()
    run.wait_until(lambda: running(gate) == 2, what="two synchronous calls running")
    refused = run.http.post("/v1/capabilities/limited.hold", json={"label": "third"})
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "1"
    error = refused.json()["error"]
    assert (error["code"], error["capability"], error["max_concurrency"]) == (
        "CONCURRENCY_LIMIT",
        "limited.hold",
        2,
    )
    assert error["message"] == (
        "limited.hold is at its max_concurrency of 2: 2 synchronous or streaming call(s) of "
        "it are in progress on this server (running, or queued until a worker takes them)"
    )
    rejected = 'crank_requests_rejected_total{reason="concurrency_limit"} 1.0'
    assert rejected in run.http.get("/metrics").text
    # a queued task is not refused: it waits for a slot
    queued = run.http.post("/v1/tasks", json={"capability": "limited.hold", "input": {}})
    assert queued.status_code == 202
    assert running(gate) == 2
    (gate / "open").touch()
    for caller in callers:
        caller.join(timeout=120)
    assert sorted(a.status_code for a in answers) == [200, 200]
    done = run.wait_final(queued.json()["id"])
    assert done["status"] == "succeeded"
    assert max(a.json()["peak"] for a in answers) <= 2
    metrics = run.http.get("/metrics").text
    assert (
        'crank_http_requests_total{method="POST",route="/v1/capabilities/{id}",status="429"} 1.0'
        in metrics
    )
    assert run.terminate() == 0


def test_text_streamer_refuses_the_stream_past_its_limit(crank_run: Starter) -> None:
    run = crank_run(
        "--min-workers", "3", "--max-workers", "3",
        workers=("text-streamer",),
        env={"CRANK_MAX_CONCURRENCY": "text.tokens=2"},
    )  # fmt: skip
    words = " ".join(f"w{i}" for i in range(12))
    body = {"text": words, "delay_ms": 150}
    sse = {"Accept": "text/event-stream"}
    with (
        httpx.Client(base_url=run.url, timeout=60) as first_client,
        httpx.Client(base_url=run.url, timeout=60) as second_client,
        first_client.stream("POST", "/v1/capabilities/text.tokens", json=body, headers=sse) as one,
        second_client.stream("POST", "/v1/capabilities/text.tokens", json=body, headers=sse) as two,
    ):
        assert (one.status_code, two.status_code) == (200, 200)
        first_frames, second_frames = sse_frames(one.iter_lines()), sse_frames(two.iter_lines())
        assert json.loads(next(first_frames)["data"])["token"] == "w0"
        assert json.loads(next(second_frames)["data"])["token"] == "w0"
        # both streams are live: the third is refused at once, not queued behind them
        refused = run.http.post("/v1/capabilities/text.tokens", json=body, headers=sse)
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "1"
        assert refused.json()["error"]["code"] == "CONCURRENCY_LIMIT"
        rest = list(first_frames)
        assert rest[-1]["event"] == "end"
        tokens = [json.loads(f["data"]).get("token") for f in rest if f["event"] == "message"]
        assert tokens == [f"w{i}" for i in range(1, 12)] + [None]

        # the first stream ended: a new one is admitted (retried while the server notes it)
        def admitted() -> list[dict[str, str]] | None:
            with httpx.Client(base_url=run.url, timeout=60) as client:
                r = client.post("/v1/capabilities/text.tokens", json={"text": "a b"}, headers=sse)
                return list(sse_frames(r.iter_lines())) if r.status_code == 200 else None

        frames = run.wait_until(admitted, what="a stream admitted once one ended")
        assert [f["event"] for f in frames] == ["message"] * 3 + ["end"]
        list(second_frames)
    assert run.terminate() == 0


def test_a_bad_concurrency_override_stops_crank_run_with_a_clear_error(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", CRANK_MAIN, "run", "--worker", str(LIMITED), "--port", "1"],
        cwd=tmp_path,
        env={"CRANK_MAX_CONCURRENCY": "limited.hold=zero", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(
        "error: CRANK_MAX_CONCURRENCY: 'limited.hold=zero' is not CAPABILITY=N with N a "
        "positive whole number\n"
    )
    unknown = subprocess.run(
        [sys.executable, "-c", CRANK_MAIN, "run", "--worker", str(LIMITED), "--port", "1"],
        cwd=tmp_path,
        env={"CRANK_MAX_CONCURRENCY": "nope.cap=3", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert unknown.returncode == 2, unknown.stderr
    assert unknown.stderr.startswith(
        "error: CRANK_MAX_CONCURRENCY names nope.cap, which no served worker declares\n"
    )
