"""The hot routes' short way (crank.runtime.http.fast_calls) answers as the route table
does, and what is not a hot route still reaches the route table: a live server."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    import httpx

    from crank.runtime.http.services import RuntimeServices

InlineWorker = Any


def test_the_hot_routes_answer_through_the_short_way(
    client: httpx.Client, worker: InlineWorker
) -> None:
    called = client.post("/v1/capabilities/demo.echo", json={"text": "hey", "shout": True})
    assert (called.status_code, called.json()) == (200, {"text": "HEY"})
    queued = client.post("/v1/tasks", json={"capability": "demo.echo", "input": {"text": "a"}})
    assert queued.status_code == 202
    task_id = queued.json()["id"]
    assert queued.headers["location"] == f"/v1/tasks/{task_id}"
    deadline = time.monotonic() + 120
    while (ended := client.get(f"/v1/tasks/{task_id}", params={"wait": 5})).json()[
        "status"
    ] != "succeeded" and time.monotonic() < deadline:
        assert ended.status_code == 200, ended.text
    assert (ended.status_code, ended.json()["id"]) == (200, task_id)
    assert ended.json()["status"] == "succeeded"
    missing = client.get("/v1/tasks/no-such-task")
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "TASK_NOT_FOUND")
    unknown = client.post("/v1/capabilities/no.such", json={})
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "CAPABILITY_NOT_FOUND")


@pytest.mark.parametrize(
    ("method", "path", "status", "allow"),
    [
        ("POST", "/v1/capabilities/x/dead-letters", 405, "DELETE"),  # another route
        ("POST", "/v1/capabilities/demo.echo/more", 404, None),  # two segments
        ("POST", "/v1/capabilities/demo%2Fecho", 404, None),  # decoded: two segments
        ("PUT", "/v1/tasks", 405, "GET, HEAD, POST"),
        ("POST", "/v1/tasks/some-id", 405, "DELETE, GET, HEAD"),
        ("PATCH", "/v1/capabilities/demo.echo", 405, "POST"),
    ],
)
def test_what_is_not_a_hot_route_reaches_the_route_table(
    client: httpx.Client, method: str, path: str, status: int, allow: str | None
) -> None:
    answer = client.request(method, path, json={})
    assert answer.status_code == status, answer.text
    assert answer.json()["error"]["code"] == {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}[status]
    assert answer.headers.get("allow") == allow


def test_a_hot_route_keeps_the_guard(make_services: Any, serve: Any) -> None:
    services: RuntimeServices = make_services(api_token="s3cret-token")
    client = serve(services)
    for method, path in (
        ("POST", "/v1/capabilities/demo.echo"),
        ("POST", "/v1/tasks"),
        ("GET", "/v1/tasks/some-id"),
    ):
        answer = client.request(method, path, json={"text": "x"})
        assert (answer.status_code, answer.json()["error"]["code"]) == (401, "UNAUTHORIZED")
