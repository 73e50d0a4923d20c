"""One trace through ``crank run``, HTTP -> queue -> worker process, as an operator sees
it: spans from the server and from the worker process that ran the task (the SDK's
exporter writing every process's spans to one file), and log lines that carry the
same trace id."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from .conftest import free_port

if TYPE_CHECKING:
    from collections.abc import Callable

    from .conftest import CrankRun

pytestmark = [
    pytest.mark.slow,
    pytest.mark.requires("opentelemetry.sdk", hint="pip install 'crank-workers[otel]'"),
]

OBSERVED = Path(__file__).resolve().parents[2] / "fixtures" / "observed_workers"
CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
ECHO = "/v1/capabilities/observe.echo"


def observed_run(crank_run: Callable[..., CrankRun], **env: str) -> CrankRun:
    env = {"CRANK_LOG_FORMAT": "json", "OTEL_TRACES_EXPORTER": "", **env}
    return crank_run("--worker", str(OBSERVED), fixture_workers=False, env=env)


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def worker_line(run: CrankRun, text: str) -> dict[str, Any]:
    """The handler's log line about ``text`` (it logs the length), once it is written."""
    event = f"echoing {len(text)} characters"

    def written() -> list[dict[str, Any]]:
        return [line for line in json_lines(run.log()) if line.get("event") == event]

    (line,) = run.wait_until(written, what=f"the worker's line {event!r}")
    return line


def test_a_callers_trace_continues_through_the_queue_into_the_worker_process(
    crank_run: Callable[..., CrankRun], tmp_path: Path
) -> None:
    spans_file = tmp_path / "spans.jsonl"
    run = observed_run(crank_run, CRANK_TRACES_FILE=str(spans_file))
    answer = run.http.post(
        ECHO, json={"text": "hello"}, headers={"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"}
    )
    assert answer.status_code == 200, answer.text

    def spans() -> dict[str, dict[str, Any]]:
        found = {}
        if spans_file.exists():
            found = {s["name"]: s for s in json_lines(spans_file.read_text())}
        names = {f"POST {ECHO}", "crank.submit", "crank.task observe.echo"}
        return found if names <= set(found) else {}

    found = run.wait_until(spans, what="the request's, the submit's and the task's spans")
    request = found[f"POST {ECHO}"]
    submit = found["crank.submit"]
    task = found["crank.task observe.echo"]
    # one trace, the caller's: caller -> request -> submit -> task
    assert {s["context"]["trace_id"] for s in (request, submit, task)} == {f"0x{CALLER_TRACE}"}
    assert request["parent_id"] == f"0x{CALLER_SPAN}"
    assert submit["parent_id"] == request["context"]["span_id"]
    assert task["parent_id"] == submit["context"]["span_id"]
    assert (request["kind"], task["kind"]) == ("SpanKind.SERVER", "SpanKind.CONSUMER")
    assert task["status"]["status_code"] == "OK"
    # written by two processes: crank run itself and one of its worker processes
    assert request["resource"]["attributes"]["process.pid"] == run.pid
    assert task["resource"]["attributes"]["process.pid"] in run.workers()
    # and the logs of both carry the trace id, the worker's with the task's ids
    line = worker_line(run, "hello")
    assert line["trace_id"] == CALLER_TRACE
    assert line["task_id"] == task["attributes"]["crank.task_id"]
    assert line["capability"] == "observe.echo"
    access = [
        entry
        for entry in json_lines(run.log())
        if entry.get("event") == "http_request" and entry.get("path") == ECHO
    ]
    assert [entry["trace_id"] for entry in access] == [CALLER_TRACE]
    assert run.terminate() == 0


def test_a_failed_tasks_span_ends_in_error_with_its_code(
    crank_run: Callable[..., CrankRun], tmp_path: Path
) -> None:
    spans_file = tmp_path / "spans.jsonl"
    run = observed_run(crank_run, CRANK_TRACES_FILE=str(spans_file))
    # observe.fail raises KeyError('oops'), one attempt
    answer = run.http.post(
        "/v1/tasks",
        json={"capability": "observe.fail", "input": {}},
        headers={"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"},
    )
    assert answer.status_code == 202, answer.text

    def task_span() -> dict[str, Any] | None:
        spans = json_lines(spans_file.read_text()) if spans_file.exists() else []
        return next((s for s in spans if s["name"] == "crank.task observe.fail"), None)

    task = run.wait_until(task_span, what="the failed task's span")
    assert task["context"]["trace_id"] == f"0x{CALLER_TRACE}"
    assert task["attributes"]["crank.task_id"] == answer.json()["id"]
    assert task["attributes"]["error.type"] == "INTERNAL"
    assert task["status"] == {"status_code": "ERROR", "description": "INTERNAL: 'oops'"}
    assert run.terminate() == 0


def test_without_a_traceparent_the_logs_carry_the_new_traces_id(
    crank_run: Callable[..., CrankRun], tmp_path: Path
) -> None:
    spans_file = tmp_path / "spans.jsonl"
    run = observed_run(crank_run, CRANK_TRACES_FILE=str(spans_file))
    assert run.http.post(ECHO, json={"text": "no parent"}).status_code == 200
    line = worker_line(run, "no parent")

    def task_span() -> dict[str, Any] | None:
        names = {s["name"]: s for s in json_lines(spans_file.read_text())}
        return names.get("crank.task observe.echo")

    task = run.wait_until(task_span, what="the task's span")
    assert task["context"]["trace_id"] == f"0x{line['trace_id']}"
    assert line["trace_id"] != CALLER_TRACE
    assert run.terminate() == 0


def test_without_a_tracer_the_trace_id_still_reaches_the_worker_logs(
    crank_run: Callable[..., CrankRun],
) -> None:
    run = observed_run(crank_run, CRANK_TRACES_FILE="")
    answer = run.http.post(
        ECHO,
        json={"text": "untraced"},
        headers={"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"},
    )
    assert answer.status_code == 200, answer.text
    assert worker_line(run, "untraced")["trace_id"] == CALLER_TRACE
    assert run.terminate() == 0


@pytest.mark.parametrize(
    ("env", "error", "hint"),
    [
        (
            {"CRANK_TRACES_FILE": "/proc/crank/spans.jsonl"},
            "error: CRANK_TRACES_FILE=/proc/crank/spans.jsonl: cannot append to it: ",
            "  hint: point it at a writable file",
        ),
        (
            {"OTEL_TRACES_EXPORTER": "carrier-pigeon"},
            "error: OTEL_TRACES_EXPORTER=carrier-pigeon: no installed OpenTelemetry package "
            "provides that exporter",
            "  hint: installed: console",
        ),
    ],
)
def test_a_trace_export_that_cannot_work_stops_crank_run(
    tmp_path: Path, env: dict[str, str], error: str, hint: str
) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "crank",
            "run",
            "--worker",
            str(OBSERVED),
            "--port",
            str(free_port()),
        ],
        cwd=tmp_path,
        env={**os.environ, "OTEL_TRACES_EXPORTER": "", "CRANK_TRACES_FILE": "", **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    first, second = proc.stderr.splitlines()[-2:]
    assert first.startswith(error), proc.stderr
    assert second.startswith(hint), proc.stderr
