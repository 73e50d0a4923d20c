"""A broker outage as the API tells it: the real Redis broker, stopped mid-test.

Calls answer 503 ``BROKER_UNAVAILABLE`` (nothing queued, retry soon); the report and the
metrics say the queue's numbers are unknown instead of showing zeros that look real.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from crank.runtime.brokers.contract import ClaimOptions, TaskSpec

from .conftest import BROKER_ROUTES, documented_503_codes, wait_for_outage

if TYPE_CHECKING:
    from collections.abc import Callable

    import httpx

    from crank.runtime.http.services import RuntimeServices

    from ..conftest import RedisServer


def _dead_letter(services: RuntimeServices) -> str:
    broker = services.broker
    record = broker.submit(TaskSpec("demo.slow", {"seconds": 0}, max_attempts=1))
    [claim] = broker.claim(ClaimOptions("t", capabilities=("demo.slow",), block_s=10))
    broker.fail(claim, {"code": "BOOM", "message": "gone wrong"}, retryable=False)
    return record.id


def _samples(metrics: str, name: str) -> list[str]:
    """The sample lines of ``name`` (its HELP and TYPE lines left out)."""
    return re.findall(rf"^{name}(?:{{[^}}]*}})? .*$", metrics, re.M)


def test_calls_answer_503_broker_unavailable_while_the_broker_is_down(
    redis_services: RuntimeServices,
    redis_server_aof: RedisServer,
    serve: Callable[[RuntimeServices], httpx.Client],
) -> None:
    http = serve(redis_services)
    task = http.post("/v1/tasks", json={"capability": "demo.echo", "input": {"text": "a"}})
    assert task.status_code == 202, task.text
    task_id = task.json()["id"]
    documented = documented_503_codes(http.get("/openapi.json").json())
    redis_server_aof.stop()
    wait_for_outage(http)
    answers = {
        ("/v1/tasks", "post"): http.post(
            "/v1/tasks", json={"capability": "demo.echo", "input": {"text": "b"}}
        ),
        ("/v1/capabilities/demo.echo", "post"): http.post(
            "/v1/capabilities/demo.echo", json={"text": "c"}
        ),
        ("/v1/tasks", "get"): http.get("/v1/tasks"),
        ("/v1/tasks/{task_id}", "get"): http.get(f"/v1/tasks/{task_id}"),
        ("/v1/tasks/{task_id}", "delete"): http.delete(f"/v1/tasks/{task_id}"),
        ("/v1/tasks/{task_id}/events", "get"): http.get(f"/v1/tasks/{task_id}/events"),
        ("/v1/dead-letters", "get"): http.get("/v1/dead-letters"),
        ("/v1/dead-letters/{task_id}", "delete"): http.delete(f"/v1/dead-letters/{task_id}"),
        ("/v1/dead-letters/{task_id}/redrive", "post"): http.post(
            f"/v1/dead-letters/{task_id}/redrive"
        ),
        ("/v1/capabilities/{capability}/dead-letters", "delete"): http.delete(
            "/v1/capabilities/demo.echo/dead-letters"
        ),
        ("/v1/capabilities/{capability}/dead-letters/redrive", "post"): http.post(
            "/v1/capabilities/demo.echo/dead-letters/redrive"
        ),
    }
    # every route that reads the broker is asked: each answers what its document says
    assert set(BROKER_ROUTES) <= set(answers)
    for request, answer in answers.items():
        assert answer.status_code == 503, (request, answer.text)
        error: dict[str, Any] = answer.json()["error"]
        assert error["code"] == "BROKER_UNAVAILABLE", (request, error)
        assert error["code"] in documented[request], request
        assert "Redis broker" in error["message"], (request, error)
        assert "redis-server" in error["hint"], (request, error)
        assert answer.headers["retry-after"] == "1", request


def test_the_report_and_metrics_say_the_queue_is_unknown_while_the_broker_is_down(
    redis_services: RuntimeServices,
    redis_server_aof: RedisServer,
    serve: Callable[[RuntimeServices], httpx.Client],
) -> None:
    http = serve(redis_services)
    _dead_letter(redis_services)
    redis_services.broker.submit(TaskSpec("demo.echo", {"text": "waiting"}))
    before = http.get("/metrics").text
    assert _samples(before, "crank_dead_letters") == ["crank_dead_letters 1.0"]
    assert 'crank_queue_depth{capability="demo.echo"} 1.0' in _samples(before, "crank_queue_depth")

    redis_server_aof.stop()
    wait_for_outage(http)
    report = http.get("/v1/status").json()
    assert report["overall_health"] == "critical"
    assert "broker unreachable" in report["problems"]
    # unknown, not zero: an alert on dead letters must not clear because Redis is down
    assert report["queue_health"] == {
        "total_pending_tasks": None,
        "oldest_task_age_seconds": None,
        "bottleneck_agent": None,
        "running_tasks": None,
        "dead_letters": None,
        "pending_by_capability": None,
        "backing_off_tasks": None,
        "backing_off_by_capability": None,
    }
    assert report["worker_pool_health"]["utilization_percentage"] is None

    metrics = http.get("/metrics").text
    assert _samples(metrics, "crank_broker_up") == ["crank_broker_up 0.0"]
    for name in (
        "crank_dead_letters",
        "crank_tasks_running",
        "crank_oldest_pending_task_age_seconds",
        "crank_queue_depth",
        "crank_queue_backing_off",
    ):
        assert _samples(metrics, name) == [], name
    workers = _samples(metrics, "crank_workers")
    assert workers == ['crank_workers{state="total"} 0.0', 'crank_workers{state="healthy"} 0.0']
