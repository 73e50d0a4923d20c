"""Requests and results that are odd at the level of bytes, through ``crank run``: a
JSON string that is not Unicode (a lone UTF-16 surrogate) is refused at its path, a
result that holds one is still answered (escaped, as valid JSON), a result holding NaN
(which JSON has no form for) fails its task as the worker's bug, and a client that
leaves before its body arrived is logged and counted as such, not as a broker failure."""

from __future__ import annotations

import json
import re
import socket
from typing import TYPE_CHECKING

from crank import connect

if TYPE_CHECKING:
    from collections.abc import Callable

    from .conftest import CrankRun

JSON = {"content-type": "application/json"}


def test_a_lone_surrogate_in_a_body_is_refused_at_its_path(
    crank_run: Callable[..., CrankRun],
) -> None:
    run = crank_run("--min-workers", "1", "--max-workers", "1")
    sync = run.http.post(
        "/v1/capabilities/demo.echo", content=b'{"text": "a\\ud800b"}', headers=JSON
    )
    assert sync.status_code == 400, sync.text
    error = sync.json()["error"]
    assert error["code"] == "INVALID_INPUT"
    assert error["message"] == (
        "the request body holds a lone UTF-16 surrogate ('\\ud800') at $.text: "
        "it is not a Unicode character"
    )
    assert error["errors"] == [{"path": "$.text", "message": "a lone UTF-16 surrogate"}]
    body = b'{"capability": "demo.echo", "input": {"list": ["ok", "\\udc00"]}}'
    queued = run.http.post("/v1/tasks", content=body, headers=JSON)
    assert queued.status_code == 400, queued.text
    assert queued.json()["error"]["errors"][0]["path"] == "$.input.list[1]"
    assert run.http.get("/v1/tasks").json()["tasks"] == []  # nothing was queued
    # a surrogate pair is one character; an escaped backslash is no escape at all
    pair = run.http.post(
        "/v1/capabilities/demo.echo", content=b'{"text": "\\ud83d\\ude00"}', headers=JSON
    )
    assert pair.status_code == 200, pair.text
    assert pair.json() == {"text": "\U0001f600"}
    text = run.http.post(
        "/v1/capabilities/demo.echo", content=b'{"text": "\\\\ud800"}', headers=JSON
    )
    assert text.status_code == 200, text.text
    assert text.json() == {"text": "\\ud800"}


def test_a_result_holding_a_lone_surrogate_is_answered_escaped(
    crank_run: Callable[..., CrankRun],
) -> None:
    """A producer on the broker is not behind the HTTP check: its task's result (here the
    echo of its input) holds a lone surrogate, and reading it over HTTP answers 200 with
    the surrogate escaped, not a 500 from a UTF-8 encoder."""
    run = crank_run("--min-workers", "1", "--max-workers", "1")
    client = connect(run.broker_url)
    try:
        task = client.submit("demo.echo", {"text": "a\ud800"})
        assert task.result(timeout=60) == {"text": "a\ud800"}
    finally:
        client.close()
    answer = run.http.get(f"/v1/tasks/{task.id}")
    assert answer.status_code == 200, answer.text
    assert b'"result":{"text":"a\\ud800"}' in answer.content
    assert json.loads(answer.content)["result"] == {"text": "a\ud800"}
    assert "Traceback" not in run.log()


def test_a_client_that_leaves_before_its_body_arrived_is_a_499_not_a_broker_failure(
    crank_run: Callable[..., CrankRun],
) -> None:
    run = crank_run("--min-workers", "1", "--max-workers", "1")
    with socket.create_connection(("127.0.0.1", run.port)) as sock:
        sock.sendall(
            b"POST /v1/capabilities/demo.echo HTTP/1.1\r\nHost: crank\r\n"
            b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
            b'{"text": "half'
        )
    counted = 'route="/v1/capabilities/{id}",status="499"} 1.0'

    def logged() -> list[dict[str, object]]:
        return [
            line
            for line in map(json.loads, re.findall(r"^\{.*$", run.log(), re.MULTILINE))
            if line.get("event") == "http_request" and line.get("status") == 499
        ]

    run.wait_until(lambda: counted in run.http.get("/metrics").text, what="the 499 counted")
    [line] = run.wait_until(logged, what="the access log line of the 499")
    assert line["path"] == "/v1/capabilities/demo.echo"
    assert "broker_failure" not in run.log()
    assert run.http.get("/v1/tasks").json()["tasks"] == []


def test_a_result_holding_nan_fails_its_task_instead_of_every_read_of_it(
    crank_run: Callable[..., CrankRun],
) -> None:
    """A JSON Schema ``number`` takes NaN; stored, it made every read of the result (the
    synchronous answer, ``GET /v1/tasks/{id}``) a 500."""
    run = crank_run("--min-workers", "1", "--max-workers", "1")
    answer = run.http.post("/v1/capabilities/demo.echo", json={"text": "not-a-number"})
    assert answer.status_code == 502, answer.text
    error = answer.json()["error"]
    assert error["task_error"]["code"] == "OUTPUT_INVALID"
    assert error["task_error"]["errors"] == [
        {"path": "$.score", "message": "nan is not a JSON number"}
    ]
    task = run.http.get(f"/v1/tasks/{error['id']}")
    assert task.status_code == 200, task.text
    assert task.json()["status"] == "dead"
    assert "Traceback" not in run.log()
