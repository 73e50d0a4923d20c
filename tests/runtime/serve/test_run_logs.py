"""What ``crank run`` writes to its log stream, read as an operator would read it: JSON
lines through a pipe or file (tracebacks in them, secrets out), readable lines on a
terminal (a real pseudo-terminal), and a clear error for a log format it does not know."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from .conftest import free_port

if TYPE_CHECKING:
    from collections.abc import Callable

    from .conftest import CrankRun

pytestmark = pytest.mark.slow

OBSERVED = Path(__file__).resolve().parents[2] / "fixtures" / "observed_workers"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def observed_run(crank_run: Callable[..., CrankRun], **kwargs: Any) -> CrankRun:
    env = {
        "CRANK_LOG_FORMAT": "",
        **kwargs.pop("env", {}),
    }  # auto, whatever the caller's shell says
    return crank_run("--worker", str(OBSERVED), fixture_workers=False, env=env, **kwargs)


def run_failing_task(run: CrankRun) -> str:
    task = run.http.post("/v1/tasks", json={"capability": "observe.fail", "input": {}})
    assert task.status_code == 202, task.text
    task_id: str = task.json()["id"]

    def ended() -> bool:
        return run.http.get(f"/v1/tasks/{task_id}").json()["status"] == "dead"

    run.wait_until(ended, what="the failing task to end as a dead letter")
    return task_id


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_a_failing_task_logs_its_traceback_as_one_json_line(
    crank_run: Callable[..., CrankRun],
) -> None:
    run = observed_run(crank_run)
    task_id = run_failing_task(run)
    raised = f"task {task_id} (observe.fail) raised"
    run.wait_until(lambda: raised in run.log(), what="the worker's log line of the failure")
    assert run.terminate() == 0
    text = run.log()
    lines = json_lines(text)
    (failure,) = [line for line in lines if line.get("event") == raised]
    assert failure["level"] == "error"
    assert failure["logger"] == "crank.runtime.worker"
    # the worker's line carries the task's ids, and the trace id of the request that queued it
    (submitted,) = [
        line
        for line in lines
        if line.get("event") == "http_request" and line.get("path") == "/v1/tasks"
    ]
    assert (failure["task_id"], failure["capability"]) == (task_id, "observe.fail")
    assert failure["trace_id"] == submitted["trace_id"]
    assert failure["request_id"] == submitted["request_id"]
    traceback = failure["exception"]
    assert traceback.startswith("Traceback (most recent call last):\n")
    assert 'crank_observed_fixture/worker.py", line ' in traceback
    assert ", in fail\n" in traceback
    assert traceback.endswith("KeyError: 'oops'")
    # the handler's own line (stdlib logging): its secrets are gone, the rest is there
    (warning,) = [line for line in lines if line.get("logger") == "crank.task.observe.fail"]
    assert warning["event"] == (
        "connecting to redis://:[REDACTED]@cache:6379/0 with password=[REDACTED]"
    )
    assert "hunter2" not in text and "pw-in-url" not in text
    (started,) = [line for line in lines if line.get("event") == "crank_started"]
    assert started["url"] == run.url
    # uvicorn's lines are JSON too, without the coloured copy it keeps for its own console
    assert any(line["event"].startswith("Started server process") for line in lines)
    assert "\x1b" not in text and "\\u001b" not in text and "color_message" not in text


def test_on_a_terminal_crank_run_writes_readable_lines(
    crank_run: Callable[..., CrankRun],
) -> None:
    run = observed_run(crank_run, start=False)
    controller, terminal = pty.openpty()
    output = bytearray()

    def read_available(timeout_s: float) -> None:
        ready, _, _ = select.select([controller], [], [], timeout_s)
        if ready:
            with contextlib.suppress(OSError):  # EIO: every writer closed the terminal
                output.extend(os.read(controller, 65536))

    try:
        run.proc = subprocess.Popen(
            run.argv,
            cwd=run.workdir,
            env=run.env,
            stdin=subprocess.DEVNULL,
            stdout=terminal,
            stderr=terminal,
        )
        os.close(terminal)
        terminal = -1
        deadline = time.monotonic() + 60
        while b"crank_started" not in output or b"Started server process" not in output:
            assert time.monotonic() < deadline, output.decode(errors="replace")
            assert run.proc.poll() is None, output.decode(errors="replace")
            read_available(0.2)
        run.wait_ready()
        task_id = run_failing_task(run)
        deadline = time.monotonic() + 60
        while b"KeyError: 'oops'" not in output:
            assert time.monotonic() < deadline, output.decode(errors="replace")
            read_available(0.2)
        assert run.terminate() == 0
        with contextlib.suppress(OSError):
            while run.proc.poll() is None or select.select([controller], [], [], 0)[0]:
                chunk = os.read(controller, 65536)
                if not chunk:
                    break
                output.extend(chunk)
    finally:
        if terminal >= 0:
            os.close(terminal)
        os.close(controller)
    raw = output.decode(errors="replace").replace("\r\n", "\n")
    assert "\x1b[" in raw  # a terminal gets colours
    text = ANSI.sub("", raw)
    lines = [line for line in text.splitlines() if line.strip()]
    assert not [line for line in lines if line.lstrip().startswith("{")], text
    assert re.search(rf"\[info\s*\] crank_started\s+.*url={re.escape(run.url)}", text), text
    assert re.search(r"\[info\s*\] Started server process \[\d+\]", text), text
    # the worker process shares the terminal, so its lines are readable too
    failure = re.search(rf"\[error\s*\] task {task_id} \(observe\.fail\) raised", text)
    assert failure, text
    assert "Traceback (most recent call last):" in text[failure.end() :]
    assert "color_message" not in text


@pytest.mark.parametrize(
    ("mode", "logged"), [("on", {200, 404}), ("errors", {404}), ("off", set())]
)
def test_crank_access_log_says_which_requests_get_a_line(
    crank_run: Callable[..., CrankRun], mode: str, logged: set[int]
) -> None:
    run = observed_run(crank_run, env={"CRANK_ACCESS_LOG": mode, "CRANK_LOG_FORMAT": "json"})
    assert run.http.get("/v1/capabilities").status_code == 200
    assert run.http.get("/v1/tasks/no-such-task").status_code == 404
    # the requests are counted whatever the log says
    counted = run.http.get("/metrics").text
    assert 'route="/v1/capabilities",status="200"} 1.0' in counted
    assert 'route="/v1/tasks/{id}",status="404"} 1.0' in counted
    # the server's last line comes after every access line it wrote
    assert run.terminate() == 0
    lines = json_lines(run.log())
    assert any(line.get("event") == "crank_stopped" for line in lines)
    statuses = {
        line["status"]
        for line in lines
        if line.get("event") == "http_request" and line.get("path") != "/ready"
    }
    assert statuses == logged
    (started,) = [line for line in lines if line.get("event") == "crank_started"]
    assert started["access_log"] == mode


@pytest.mark.parametrize(
    ("variable", "value", "lines"),
    [
        (
            "CRANK_LOG_FORMAT",
            "xml",
            [
                "error: CRANK_LOG_FORMAT='xml' is not a log format",
                "  hint: set CRANK_LOG_FORMAT to one of auto, json, console, or unset it",
            ],
        ),
        (
            "CRANK_ACCESS_LOG",
            "verbose",
            [
                "error: access log mode 'verbose' is not one of on, errors, off",
                "  hint: set CRANK_ACCESS_LOG to on, errors or off",
            ],
        ),
    ],
)
def test_an_unknown_log_setting_stops_crank_run_with_a_clear_error(
    tmp_path: Path, variable: str, value: str, lines: list[str]
) -> None:
    port = str(free_port())
    proc = subprocess.run(
        [sys.executable, "-m", "crank", "run", "--worker", str(OBSERVED), "--port", port],
        cwd=tmp_path,
        env={**os.environ, variable: value},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == lines


def test_an_api_that_answers_anyone_is_said_to_at_start(
    crank_run: Callable[..., CrankRun],
) -> None:
    """An empty CRANK_API_TOKEN (an unset shell variable passed on) means no token; a
    server reachable beyond this machine without one queues tasks for anybody."""

    def warnings(run: CrankRun) -> dict[str, str]:
        run.wait_until(lambda: "crank_started" in run.log(), what="the start-up line")
        lines = json_lines(run.log())
        return {line["event"]: line["message"] for line in lines if line["level"] == "warning"}

    empty = crank_run("--max-workers", "0", env={"CRANK_API_TOKEN": ""})
    assert warnings(empty) == {
        "api_token_empty": "CRANK_API_TOKEN is set but empty: the API answers without a token"
    }
    assert empty.terminate() == 0
    everyone = crank_run("--max-workers", "0", "--host", "0.0.0.0")
    assert warnings(everyone) == {
        "api_open": "listening on 0.0.0.0 with no CRANK_API_TOKEN set, so whoever reaches the port "
        "can call capabilities and queue tasks"
    }
    assert everyone.terminate() == 0
    guarded = crank_run("--max-workers", "0", "--host", "0.0.0.0", env={"CRANK_API_TOKEN": "t"})
    assert warnings(guarded) == {}
