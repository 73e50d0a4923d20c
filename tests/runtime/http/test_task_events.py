"""``GET /v1/tasks/{id}/events``: a streaming task's SSE, resumed after the last event seen."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest

from crank.runtime.brokers.contract import TaskSpec

from ..conftest import sse_frames
from .conftest import WAIT_S, ScriptedWorker

if TYPE_CHECKING:
    import threading
    from collections.abc import Callable

    import httpx

    from crank.runtime.brokers.contract import Broker
    from crank.runtime.http.services import RuntimeServices

    from .conftest import InlineWorker


def _submit(client: httpx.Client, capability: str, payload: dict[str, Any]) -> str:
    r = client.post("/v1/tasks", json={"capability": capability, "input": payload})
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


def _events(
    client: httpx.Client, task_id: str, headers: dict[str, str] | None = None, **params: Any
) -> tuple[httpx.Response, list[dict[str, str]]]:
    with client.stream("GET", f"/v1/tasks/{task_id}/events", headers=headers, params=params) as r:
        return r, list(sse_frames(r.iter_lines()))


def _finished(services: RuntimeServices, script: Callable[..., None]) -> str:
    """A demo.count task that the scripted worker has run to its end."""
    record = services.broker.submit(TaskSpec(capability="demo.count", payload={"n": 3}))
    with ScriptedWorker(services.broker, script):
        pass
    done = services.broker.get(record.id)
    assert done is not None
    assert done.done
    return record.id


def _publish_three(broker: Broker, claim: Any, go: threading.Event) -> None:
    events = [{"i": 1}, {"i": 2}, {"i": 3}]
    broker.publish_events(claim.task.id, events)
    broker.ack(claim, events)


def test_a_stream_resumes_live_after_last_event_id(
    services: RuntimeServices, client: httpx.Client
) -> None:
    def script(broker: Broker, claim: Any, go: threading.Event) -> None:
        broker.publish_events(claim.task.id, [{"i": 1}, {"i": 2}, {"i": 3}])
        assert go.wait(WAIT_S), "the test never read event 3"
        broker.publish_events(claim.task.id, [{"i": 4}])
        broker.ack(claim, [{"i": i} for i in range(1, 5)])

    with ScriptedWorker(services.broker, script) as worker:
        task_id = _submit(client, "demo.count", {"n": 4})
        with client.stream(
            "GET", f"/v1/tasks/{task_id}/events", headers={"Last-Event-ID": "2"}
        ) as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream")
            assert r.headers["x-crank-task-id"] == task_id
            frames = sse_frames(r.iter_lines())
            assert next(frames) == {"id": "3", "event": "message", "data": '{"i": 3}'}
            task = services.broker.get(task_id)
            assert task is not None
            assert task.status == "running"
            worker.go.set()
            rest = list(frames)
    assert rest[0] == {"id": "4", "event": "message", "data": '{"i": 4}'}
    assert rest[1]["event"] == "end"
    assert json.loads(rest[1]["data"]) == {"id": task_id, "events": 2}
    assert len(rest) == 2


def test_after_query_resumes_a_finished_task_and_the_header_wins(
    services: RuntimeServices, client: httpx.Client
) -> None:
    task_id = _finished(services, _publish_three)
    r, frames = _events(client, task_id, after=1)
    assert r.status_code == 200
    assert [(f.get("id"), f["event"]) for f in frames] == [
        ("2", "message"),
        ("3", "message"),
        (None, "end"),
    ]
    assert json.loads(frames[-1]["data"]) == {"id": task_id, "events": 2}
    _, frames = _events(client, task_id, headers={"Last-Event-ID": "2"}, after=0)
    assert [f.get("id") for f in frames] == ["3", None]


def test_a_stream_from_the_start_without_accept_header(
    services: RuntimeServices, client: httpx.Client
) -> None:
    task_id = _finished(services, _publish_three)
    r, frames = _events(client, task_id, headers={"Accept": "application/json"})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    assert [f["data"] for f in frames[:3]] == ['{"i": 1}', '{"i": 2}', '{"i": 3}']
    assert json.loads(frames[3]["data"]) == {"id": task_id, "events": 3}


def test_resuming_after_the_last_event_sends_only_the_end(
    services: RuntimeServices, client: httpx.Client
) -> None:
    task_id = _finished(services, _publish_three)
    _, frames = _events(client, task_id, headers={"Last-Event-ID": "3"})
    assert len(frames) == 1
    assert frames[0]["event"] == "end"
    assert json.loads(frames[0]["data"]) == {"id": task_id, "events": 0}


def test_a_finished_task_without_published_events_replays_its_result(
    client: httpx.Client, worker: InlineWorker
) -> None:
    """The inline worker publishes no events: the task's result holds them."""
    done = client.post("/v1/capabilities/demo.count", json={"n": 3})
    assert done.json() == {"events": [{"i": 1}, {"i": 2}, {"i": 3}]}
    task_id = done.headers["x-crank-task-id"]
    r, frames = _events(client, task_id, headers={"Last-Event-ID": "1"})
    assert r.status_code == 200
    assert frames[:2] == [
        {"id": "2", "event": "message", "data": '{"i": 2}'},
        {"id": "3", "event": "message", "data": '{"i": 3}'},
    ]
    assert json.loads(frames[2]["data"]) == {"id": task_id, "events": 2}
    assert len(frames) == 3


def test_a_failed_task_ends_the_resumed_stream_with_an_error_event(
    services: RuntimeServices, client: httpx.Client
) -> None:
    def script(broker: Broker, claim: Any, go: threading.Event) -> None:
        broker.publish_events(claim.task.id, [{"i": 1}])
        broker.fail(claim, {"code": "BOOM", "message": "it broke"}, retryable=False)

    task_id = _finished(services, script)
    r, frames = _events(client, task_id, after=1)
    assert r.status_code == 200
    assert [f["event"] for f in frames] == ["error"]
    error = json.loads(frames[0]["data"])
    assert (error["code"], error["status"], error["id"]) == ("BOOM", "dead", task_id)


def test_an_unknown_task_is_404(client: httpx.Client) -> None:
    r = client.get("/v1/tasks/no-such-task/events")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "TASK_NOT_FOUND"


def test_a_task_of_a_capability_that_does_not_stream_is_409(client: httpx.Client) -> None:
    task_id = _submit(client, "demo.echo", {"text": "hi"})
    r = client.get(f"/v1/tasks/{task_id}/events")
    assert r.status_code == 409
    error = r.json()["error"]
    assert (error["code"], error["capability"]) == ("NOT_STREAMING", "demo.echo")
    assert "demo.echo, which does not stream events" in error["message"]
    assert f"GET /v1/tasks/{task_id}" in error["hint"]


def test_a_task_of_a_capability_no_longer_served_is_409(
    services: RuntimeServices, client: httpx.Client
) -> None:
    record = services.broker.submit(TaskSpec(capability="demo.removed", payload={}))
    r = client.get(f"/v1/tasks/{record.id}/events")
    assert r.status_code == 409
    error = r.json()["error"]
    assert error["code"] == "NOT_STREAMING"
    assert "demo.removed, which is not served here" in error["message"]


@pytest.mark.parametrize(
    ("headers", "params", "path"),
    [
        ({"Last-Event-ID": "abc"}, {}, "header:Last-Event-ID"),
        ({"Last-Event-ID": "-1"}, {}, "header:Last-Event-ID"),
        ({"Last-Event-ID": "2.5"}, {}, "header:Last-Event-ID"),
        ({"Last-Event-ID": ""}, {}, "header:Last-Event-ID"),
        ({"Last-Event-ID": "9223372036854775808"}, {}, "header:Last-Event-ID"),
        ({"Last-Event-ID": "x"}, {"after": "1"}, "header:Last-Event-ID"),
        ({}, {"after": "one"}, "query:after"),
    ],
)
def test_a_malformed_resume_point_is_400(
    client: httpx.Client, headers: dict[str, str], params: dict[str, str], path: str
) -> None:
    task_id = _submit(client, "demo.count", {"n": 1})
    r = client.get(f"/v1/tasks/{task_id}/events", headers=headers, params=params)
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["code"] == "INVALID_INPUT"
    assert error["errors"][0]["path"] == path
    assert "integer" in error["message"]
    assert "last event" in error["hint"]


def test_a_wait_shorter_than_the_timeout_ends_the_stream_then(
    services: RuntimeServices, client: httpx.Client
) -> None:
    """``?wait=`` (a client with a deadline of its own): the stream ends after that long
    with ``event: error``, code TIMEOUT and no status: the task goes on."""

    def script(broker: Broker, claim: Any, go: threading.Event) -> None:
        broker.publish_events(claim.task.id, [{"i": 1}])
        assert go.wait(WAIT_S), "the test never read the end of the stream"
        broker.ack(claim, [{"i": 1}])

    with ScriptedWorker(services.broker, script) as worker:
        task_id = _submit(client, "demo.count", {"n": 1})
        r, frames = _events(client, task_id, wait="0.2")
        assert r.status_code == 200
        assert [f["event"] for f in frames] == ["message", "error"]
        error = json.loads(frames[1]["data"])
        assert (error["code"], error["id"]) == ("TIMEOUT", task_id)
        assert "status" not in error
        assert "0.2 s" in error["message"]
        task = services.broker.get(task_id)
        assert task is not None and not task.done
        worker.go.set()


@pytest.mark.parametrize("wait", ["soon", "-1", "NaN", "1e"])
def test_a_wait_that_is_no_number_of_seconds_is_400(client: httpx.Client, wait: str) -> None:
    task_id = _submit(client, "demo.count", {"n": 1})
    r = client.get(f"/v1/tasks/{task_id}/events", params={"wait": wait})
    assert r.status_code == 400
    error = r.json()["error"]
    assert (error["code"], error["errors"][0]["path"]) == ("INVALID_INPUT", "query:wait")
    assert "0 or more" in error["message"]
    twice = client.get(f"/v1/tasks/{task_id}/events?wait=1&wait=2")
    assert twice.status_code == 400


def test_the_stream_needs_the_bearer_token(
    make_services: Callable[..., RuntimeServices],
    serve: Callable[[RuntimeServices], httpx.Client],
) -> None:
    services = make_services(api_token="s3cret-token")
    client = serve(services)
    task_id = _finished(services, _publish_three)
    r = client.get(f"/v1/tasks/{task_id}/events")
    assert (r.status_code, r.json()["error"]["code"]) == (401, "UNAUTHORIZED")
    r, frames = _events(client, task_id, headers={"Authorization": "Bearer s3cret-token"})
    assert r.status_code == 200
    assert [f.get("id") for f in frames] == ["1", "2", "3", None]
