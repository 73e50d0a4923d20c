"""SSE forwarded live, with the test playing the worker on the server's in-memory broker.

The worker role runs on a thread: it claims the task, publishes events and
waits for the test (``go``) between them, so the test reads an event over
HTTP while the task provably still runs.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from ..conftest import sse_frames
from .conftest import WAIT_S, ScriptedWorker

if TYPE_CHECKING:
    import threading
    from collections.abc import Callable

    import httpx

    from crank.runtime.brokers.contract import Broker
    from crank.runtime.http.services import RuntimeServices


def _sse(client: httpx.Client, n: int = 2) -> Any:
    return client.stream(
        "POST",
        "/v1/capabilities/demo.count",
        json={"n": n},
        headers={"Accept": "text/event-stream"},
    )


def test_each_event_is_sent_while_the_task_runs(
    services: RuntimeServices, client: httpx.Client
) -> None:
    def script(broker: Broker, claim: Any, go: threading.Event) -> None:
        broker.publish_events(claim.task.id, [{"i": 1}])
        assert go.wait(WAIT_S), "the test never read event 1"
        broker.publish_events(claim.task.id, [{"i": 2}])
        broker.ack(claim, [{"i": 1}, {"i": 2}])

    with ScriptedWorker(services.broker, script) as worker, _sse(client) as r:
        assert r.status_code == 200
        frames = sse_frames(r.iter_lines())
        assert next(frames) == {"id": "1", "event": "message", "data": '{"i": 1}'}
        task = services.broker.get(r.headers["x-crank-task-id"])
        assert task is not None
        assert task.status == "running"
        worker.go.set()
        rest = list(frames)
    assert rest[0] == {"id": "2", "event": "message", "data": '{"i": 2}'}
    assert rest[1]["event"] == "end"
    assert json.loads(rest[1]["data"]) == {"id": task.id, "events": 2}
    assert len(rest) == 2


def test_events_published_just_before_the_ack_are_not_lost(
    services: RuntimeServices, client: httpx.Client
) -> None:
    def script(broker: Broker, claim: Any, go: threading.Event) -> None:
        broker.publish_events(claim.task.id, [{"i": 1}])
        assert go.wait(WAIT_S)
        # the rest and the ack land together: the reader sees "done" with events unread
        events = [{"i": i} for i in range(2, 251)]
        broker.publish_events(claim.task.id, events)
        broker.ack(claim, [{"i": 1}, *events])

    with ScriptedWorker(services.broker, script) as worker, _sse(client, 20) as r:
        frames = sse_frames(r.iter_lines())
        assert next(frames)["data"] == '{"i": 1}'
        worker.go.set()
        rest = list(frames)
    numbers = [json.loads(f["data"])["i"] for f in rest if f["event"] == "message"]
    assert numbers == list(range(2, 251))
    assert [f["id"] for f in rest[:-1]] == [str(i) for i in range(2, 251)]
    assert json.loads(rest[-1]["data"])["events"] == 250


def test_a_failure_after_events_ends_the_stream_with_an_error_event(
    services: RuntimeServices, client: httpx.Client
) -> None:
    def script(broker: Broker, claim: Any, go: threading.Event) -> None:
        broker.publish_events(claim.task.id, [{"i": 1}])
        assert go.wait(WAIT_S)
        broker.fail(claim, {"code": "BOOM", "message": "it broke"}, retryable=False)

    with ScriptedWorker(services.broker, script) as worker, _sse(client) as r:
        frames = sse_frames(r.iter_lines())
        assert next(frames)["data"] == '{"i": 1}'
        worker.go.set()
        rest = list(frames)
    assert [f["event"] for f in rest] == ["error"]
    error = json.loads(rest[0]["data"])
    assert (error["code"], error["message"], error["status"]) == ("BOOM", "it broke", "dead")


def test_a_failure_before_any_event_is_an_http_error(
    services: RuntimeServices, client: httpx.Client
) -> None:
    def script(broker: Broker, claim: Any, go: threading.Event) -> None:
        broker.fail(claim, {"code": "BOOM", "message": "it broke"}, retryable=False)

    with ScriptedWorker(services.broker, script):
        r = client.post(
            "/v1/capabilities/demo.count", json={"n": 2}, headers={"Accept": "text/event-stream"}
        )
    assert r.status_code == 502
    assert r.json()["error"]["code"] == "WORKER_FAILED"


def test_a_client_that_disconnects_frees_its_request_slot(
    make_services: Callable[..., RuntimeServices],
    serve: Callable[[RuntimeServices], httpx.Client],
) -> None:
    """With one request allowed at a time, the next one is served once the stream stops."""
    import time

    services = make_services(max_inflight_requests=1)
    client = serve(services)

    def script(broker: Broker, claim: Any, go: threading.Event) -> None:
        broker.publish_events(claim.task.id, [{"i": 1}])
        assert go.wait(WAIT_S)
        broker.ack(claim, [{"i": 1}])

    with ScriptedWorker(services.broker, script):
        with _sse(client) as r:
            frames = sse_frames(r.iter_lines())  # kept: closing it would close the response
            assert next(frames)["data"] == '{"i": 1}'
            assert client.get("/v1/capabilities").status_code == 429  # the stream holds it
        client.close()  # the connection is gone while the task still runs
        other = serve(services)
        deadline = time.monotonic() + WAIT_S / 2
        status = 429
        while status == 429 and time.monotonic() < deadline:
            status = other.get("/v1/capabilities").status_code
            time.sleep(0.05)
        assert status == 200
        task = services.broker.get(r.headers["x-crank-task-id"])
        assert task is not None
        assert task.status == "running"
