"""A broker outage as the API tells it: the real Redis broker, stopped mid-test.

Calls answer 503 ``BROKER_UNAVAILABLE`` (nothing queued, retry soon).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .conftest import wait_for_outage

if TYPE_CHECKING:
    from collections.abc import Callable

    import httpx

    from crank.runtime.http.services import RuntimeServices

    from ..conftest import RedisServer


def test_calls_answer_503_broker_unavailable_while_the_broker_is_down(
    redis_services: RuntimeServices,
    redis_server_aof: RedisServer,
    serve: Callable[[RuntimeServices], httpx.Client],
) -> None:
    http = serve(redis_services)
    task = http.post("/v1/tasks", json={"capability": "demo.echo", "input": {"text": "a"}})
    assert task.status_code == 202, task.text
    redis_server_aof.stop()
    wait_for_outage(http)
    answers = {
        "POST /v1/tasks": http.post(
            "/v1/tasks", json={"capability": "demo.echo", "input": {"text": "b"}}
        ),
        "POST /v1/capabilities/demo.echo": http.post(
            "/v1/capabilities/demo.echo", json={"text": "c"}
        ),
        "GET /v1/tasks": http.get("/v1/tasks"),
        "GET /v1/tasks/{id}": http.get(f"/v1/tasks/{task.json()['id']}"),
        "GET /v1/dead-letters": http.get("/v1/dead-letters"),
    }
    for request, answer in answers.items():
        assert answer.status_code == 503, (request, answer.text)
        error: dict[str, Any] = answer.json()["error"]
        assert error["code"] == "BROKER_UNAVAILABLE", (request, error)
        assert "Redis broker" in error["message"], (request, error)
        assert "redis-server" in error["hint"], (request, error)
        assert answer.headers["retry-after"] == "1", request
