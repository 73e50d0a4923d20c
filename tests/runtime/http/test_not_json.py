"""A task stored with a NaN or an infinity (by an older crank, or another program writing
to the broker: crank's own workers check their results) is answered 500 ``TASK_NOT_JSON``
naming the task and the value's path, on every way of reading it, instead of a bare 500
or a ``data: NaN`` line no JSON reader takes."""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

import pytest

from crank.client import ApiError, Client
from crank.runtime.brokers.contract import ClaimOptions, TaskSpec

from ..conftest import sse_frames
from .conftest import WAIT_S, ScriptedWorker

if TYPE_CHECKING:
    import threading
    from collections.abc import Callable

    import httpx

    from crank.runtime.brokers.contract import Broker
    from crank.runtime.http.services import RuntimeServices

HINT = (
    "it was stored as it is by a producer that does not check its values (an older crank, "
    "or another program writing to the broker); the task is kept: fix that producer"
)


def _stored(services: RuntimeServices, capability: str, result: Any, **payload: Any) -> str:
    """A task of ``capability`` acked with ``result`` straight on the broker."""
    broker = services.broker
    record = broker.submit(TaskSpec(capability, payload))
    [claim] = broker.claim(ClaimOptions("other", capabilities=(capability,), block_s=WAIT_S))
    broker.ack(claim, result)
    return record.id


def _not_json(answer: httpx.Response, task_id: str, subject: str, path: str, shown: str) -> None:
    assert answer.status_code == 500, answer.text
    hint = HINT.replace("the task is kept", "do not send the request again")
    assert answer.json() == {
        "error": {
            "code": "TASK_NOT_JSON",
            "message": f"{subject} cannot be answered: {path} is {shown}, which JSON cannot write",
            "hint": hint if subject.endswith(", but it") else HINT,
            "id": task_id,
            "errors": [{"path": path, "message": f"{shown} is not a JSON number"}],
        }
    }


@pytest.mark.parametrize(
    ("number", "shown"), [(math.nan, "NaN"), (math.inf, "Infinity"), (-math.inf, "-Infinity")]
)
def test_reading_the_task_answers_task_not_json_naming_it(
    services: RuntimeServices,
    serve: Callable[[RuntimeServices], httpx.Client],
    number: float,
    shown: str,
) -> None:
    http = serve(services)
    task_id = _stored(services, "demo.echo", {"text": "a", "score": [1.0, number]}, text="a")
    for answer in (http.get(f"/v1/tasks/{task_id}"), http.get(f"/v1/tasks/{task_id}?wait=1")):
        _not_json(answer, task_id, f"task {task_id}", "$.result.score[1]", shown)
    documented = http.get("/openapi.json").json()["paths"]["/v1/tasks/{task_id}"]["get"]
    assert documented["responses"]["500"]["description"].startswith("TASK_NOT_JSON: ")
    # the Python client raises it as it raises any refusal
    with Client(str(http.base_url)) as client, pytest.raises(ApiError) as caught:
        client.task(task_id).result(timeout=WAIT_S)
    assert (caught.value.status, caught.value.code) == (500, "TASK_NOT_JSON")
    assert caught.value.details["id"] == task_id


def test_a_list_holding_a_task_whose_error_is_not_json_names_it(
    services: RuntimeServices, client: httpx.Client
) -> None:
    broker = services.broker
    broker.submit(TaskSpec("demo.echo", {"text": "fine"}))
    record = broker.submit(TaskSpec("demo.slow", {"seconds": 0}, max_attempts=1))
    [claim] = broker.claim(ClaimOptions("other", capabilities=("demo.slow",), block_s=WAIT_S))
    broker.fail(claim, {"code": "BOOM", "message": "no", "took_s": math.nan}, retryable=False)
    subject = f"task {record.id}, listed in this page,"
    for answer in (client.get("/v1/tasks"), client.get("/v1/dead-letters")):
        _not_json(answer, record.id, subject, "$.error.took_s", "NaN")
    assert client.get("/v1/tasks?capability=demo.echo").status_code == 200


def test_a_synchronous_call_whose_stored_result_is_not_json(
    services: RuntimeServices, client: httpx.Client
) -> None:
    def script(broker: Broker, claim: Any, go: threading.Event) -> None:
        broker.ack(claim, {"text": math.nan})

    with ScriptedWorker(services.broker, script):
        answer = client.post("/v1/capabilities/demo.echo", json={"text": "a"})
    task_id = answer.headers["x-crank-task-id"]
    _not_json(answer, task_id, f"the result of task {task_id}", "$.text", "NaN")


def test_a_synchronous_call_whose_stored_error_is_not_json(
    services: RuntimeServices, client: httpx.Client
) -> None:
    def script(broker: Broker, claim: Any, go: threading.Event) -> None:
        error = {"code": "TOO_SLOW", "message": "took too long", "took_s": math.inf}
        broker.fail(claim, error, retryable=False)

    with ScriptedWorker(services.broker, script):
        answer = client.post("/v1/capabilities/demo.echo", json={"text": "a"})
    task_id = answer.headers["x-crank-task-id"]
    _not_json(answer, task_id, f"the error of task {task_id}", "$.took_s", "Infinity")


def test_an_event_that_is_not_json_ends_the_stream_with_an_error_event(
    services: RuntimeServices, client: httpx.Client
) -> None:
    def script(broker: Broker, claim: Any, go: threading.Event) -> None:
        broker.publish_events(claim.task.id, [{"i": 1}, {"i": math.inf}])
        broker.ack(claim, [{"i": 1}, {"i": math.inf}])

    with (
        ScriptedWorker(services.broker, script),
        client.stream(
            "POST",
            "/v1/capabilities/demo.count",
            json={"n": 2},
            headers={"Accept": "text/event-stream"},
        ) as r,
    ):
        task_id = r.headers["x-crank-task-id"]
        frames = list(sse_frames(r.iter_lines()))
    assert frames[0] == {"id": "1", "event": "message", "data": '{"i": 1}'}
    assert frames[1]["event"] == "error"
    assert json.loads(frames[1]["data"]) == {
        "code": "TASK_NOT_JSON",
        "message": f"event 2 of task {task_id} cannot be answered: $.i is Infinity, which JSON "
        "cannot write",
        "hint": HINT,
        "id": task_id,
        "errors": [{"path": "$.i", "message": "Infinity is not a JSON number"}],
    }
    assert len(frames) == 2  # no data: line a JSON reader refuses, no end after the error
    # resumed, and as the Python client reads it
    resumed = list(sse_frames(client.get(f"/v1/tasks/{task_id}/events?after=1").iter_lines()))
    assert [f["event"] for f in resumed] == ["error"]
    with Client(str(client.base_url)) as python, pytest.raises(ApiError) as caught:
        list(python.task(task_id).events(timeout=WAIT_S))
    assert (caught.value.status, caught.value.code) == (500, "TASK_NOT_JSON")


def test_a_stream_replayed_from_a_result_that_is_not_json(
    services: RuntimeServices, client: httpx.Client
) -> None:
    """Events kept only in the result (none published) are checked as they are replayed."""
    task_id = _stored(services, "demo.count", [{"i": 1}, {"i": math.nan}], n=2)
    frames = list(sse_frames(client.get(f"/v1/tasks/{task_id}/events").iter_lines()))
    assert [f["event"] for f in frames] == ["message", "error"]
    assert json.loads(frames[1]["data"])["code"] == "TASK_NOT_JSON"


def test_a_streaming_call_that_ended_with_a_result_that_is_not_json(
    services: RuntimeServices, client: httpx.Client
) -> None:
    """A streaming call whose worker published no event: its result's events are sent,
    checked one by one; asked for JSON, the whole answer is refused."""

    def script(broker: Broker, claim: Any, go: threading.Event) -> None:
        broker.ack(claim, [{"i": 1}, {"i": math.nan}])

    with (
        ScriptedWorker(services.broker, script),
        client.stream(
            "POST",
            "/v1/capabilities/demo.count",
            json={"n": 2},
            headers={"Accept": "text/event-stream"},
        ) as r,
    ):
        task_id = r.headers["x-crank-task-id"]
        frames = list(sse_frames(r.iter_lines()))
    assert [f["event"] for f in frames] == ["message", "error"]
    assert json.loads(frames[1]["data"])["message"].startswith(f"event 2 of task {task_id} ")

    def again(broker: Broker, claim: Any, go: threading.Event) -> None:
        broker.ack(claim, [{"i": 1}, {"i": math.nan}])

    with ScriptedWorker(services.broker, again):
        answer = client.post("/v1/capabilities/demo.count", json={"n": 2})
    task_id = answer.headers["x-crank-task-id"]
    _not_json(answer, task_id, f"the result of task {task_id}", "$.events[1].i", "NaN")


def test_an_action_on_such_a_task_is_done_and_says_so(
    services: RuntimeServices, client: httpx.Client
) -> None:
    """Purging or cancelling it happens; the answer, which holds the task, says it
    happened and why the task itself cannot follow (a redrive answers the task without
    its old error: nothing there to refuse)."""
    broker = services.broker

    def failed(retryable: bool) -> str:
        record = broker.submit(TaskSpec("demo.slow", {"seconds": 0}, max_attempts=2))
        [claim] = broker.claim(ClaimOptions("other", capabilities=("demo.slow",), block_s=WAIT_S))
        broker.fail(claim, {"code": "BOOM", "message": "no", "x": math.nan}, retryable=retryable)
        return record.id

    dead = failed(retryable=False)
    purged = client.delete(f"/v1/dead-letters/{dead}")
    _not_json(purged, dead, f"task {dead} was purged, but it", "$.error.x", "NaN")
    assert services.broker.get(dead) is None

    retrying = failed(retryable=True)
    cancelled = client.delete(f"/v1/tasks/{retrying}")
    # the error of a cancelled task keeps the one before as its cause
    subject = f"task {retrying} was cancelled, but it"
    _not_json(cancelled, retrying, subject, "$.error.cause.x", "NaN")
    assert services.broker.get(retrying).status == "cancelled"  # type: ignore[union-attr]
