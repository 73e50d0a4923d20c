"""Bearer token, body limit and overload answers of the live server."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

import pytest

from crank.runtime.http.auth import authorized, bearer_token
from crank.runtime.http.routes import ROUTES

from .conftest import WAIT_S, ScriptedWorker

if TYPE_CHECKING:
    from collections.abc import Iterator


def test_token_protects_everything_but_probes(make_services: Any, serve: Any) -> None:
    http = serve(make_services(api_token="s3cret-token"))
    for path in ("/health", "/ready", "/metrics"):
        assert http.get(path).status_code == 200, path
    r = http.get("/v1/capabilities")
    assert (r.status_code, r.json()["error"]["code"]) == (401, "UNAUTHORIZED")
    assert r.headers["www-authenticate"] == 'Bearer realm="crank"'
    assert (
        http.get("/v1/capabilities", headers={"Authorization": "Bearer wrong"}).status_code == 401
    )
    assert (
        http.get("/v1/capabilities", headers={"Authorization": "Basic s3cret-token"}).status_code
        == 401
    )
    ok = http.get("/v1/capabilities", headers={"Authorization": "Bearer s3cret-token"})
    assert ok.status_code == 200
    spec = http.get("/openapi.json", headers={"Authorization": "Bearer s3cret-token"}).json()
    assert spec["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
    }


@pytest.mark.parametrize(
    ("path", "header", "expected", "result"),
    [
        ("/v1/tasks", None, None, True),
        ("/health", None, "t", True),
        ("/v1/tasks", None, "t", False),
        ("/v1/tasks", "Bearer t", "t", True),
        ("/v1/tasks", "bearer  t ", "t", True),
        ("/v1/tasks", "Bearer ", "t", False),
        ("/v1/tasks", "Bearer tt", "t", False),
    ],
)
def test_authorized(path: str, header: str | None, expected: str | None, result: bool) -> None:
    assert authorized(path, header, expected, ROUTES.public_paths()) is result


def test_bearer_token_parsing() -> None:
    assert bearer_token("Bearer abc") == "abc"
    assert bearer_token("Token abc") is None
    assert bearer_token(None) is None


def test_body_over_the_limit_is_413_declared_or_streamed(make_services: Any, serve: Any) -> None:
    http = serve(make_services(max_body_bytes=64))
    big = {"capability": "demo.echo", "input": {"text": "x" * 100}}
    r = http.post("/v1/tasks", json=big)
    assert (r.status_code, r.json()["error"]["code"]) == (413, "BODY_TOO_LARGE")

    def chunks() -> Iterator[bytes]:
        yield b'{"capability": "demo.echo", "input": {"text": "'
        yield b"y" * 100
        yield b'"}}'

    r = http.post("/v1/tasks", content=chunks(), headers={"content-type": "application/json"})
    assert (r.status_code, r.json()["error"]["code"]) == (413, "BODY_TOO_LARGE")

    def call_chunks() -> Iterator[bytes]:
        yield b'{"text": "'
        yield b"z" * 100
        yield b'"}'

    headers = {"content-type": "application/json"}
    r = http.post("/v1/capabilities/demo.echo", content=call_chunks(), headers=headers)
    assert (r.status_code, r.json()["error"]["code"]) == (413, "BODY_TOO_LARGE")
    # each refusal counted once, whether its size was declared or found while reading
    assert 'crank_requests_rejected_total{reason="body_too_large"} 3.0' in http.get("/metrics").text


def test_inflight_bound_answers_429_with_retry_after(make_services: Any, serve: Any) -> None:
    services = make_services(max_inflight_requests=1)
    http = serve(services)

    def hold_until_told(broker: Any, claim: Any, go: threading.Event) -> None:
        assert go.wait(WAIT_S)
        broker.ack(claim, {"text": "held"})

    # the sync call holds the only request slot until the scripted worker answers it
    # (or until demo.echo's timeout_s, 10 s, ends the call)
    with ScriptedWorker(services.broker, hold_until_told) as worker:
        slow = threading.Thread(
            target=lambda: http.post("/v1/capabilities/demo.echo", json={"text": "held"}),
            daemon=True,
        )
        slow.start()
        deadline = time.monotonic() + WAIT_S
        while services.limiter.inflight < 1:
            assert time.monotonic() < deadline, "the slow call never started"
            time.sleep(0.01)
        r = http.post("/v1/tasks", json={"capability": "demo.echo", "input": {"text": "a"}})
        assert (r.status_code, r.json()["error"]["code"]) == (429, "OVERLOADED")
        assert r.headers["retry-after"] == "1"
        # what is counted (requests, the waiting call's included) and what bounds it
        assert r.json()["error"] == {
            "code": "OVERLOADED",
            "message": "the server is serving 1 request(s) at once already, its bound "
            "(CRANK_MAX_INFLIGHT, shared among its HTTP processes)",
            "hint": "retry after 1 s; a synchronous call, a ?wait= long-poll or an event "
            "stream holds its place until it answers",
        }
        assert http.get("/health").status_code == 200  # probes are never refused
        worker.go.set()
        slow.join(timeout=WAIT_S)
        assert not slow.is_alive()
    assert (
        http.post("/v1/tasks", json={"capability": "demo.echo", "input": {"text": "a"}}).status_code
        == 202
    )


def test_pending_bound_answers_429(make_services: Any, serve: Any) -> None:
    services = make_services(max_pending_tasks=3)
    services.status.ttl_s = 0.0
    http = serve(services)
    codes = [
        http.post(
            "/v1/tasks", json={"capability": "demo.echo", "input": {"text": str(i)}}
        ).status_code
        for i in range(5)
    ]
    assert codes == [202, 202, 202, 429, 429]
    r = http.post("/v1/tasks", json={"capability": "demo.echo", "input": {"text": "z"}})
    assert (r.json()["error"]["code"], r.headers["retry-after"]) == ("QUEUE_FULL", "1")


def test_refusals_of_a_full_queue_are_counted_as_rejected(make_services: Any, serve: Any) -> None:
    """``crank_requests_rejected_total`` counts every refusal before queueing: a full
    queue's 429 too, submitted or called synchronously."""
    services = make_services(max_pending_tasks=1)
    services.status.ttl_s = 0.0
    http = serve(services)
    task = {"capability": "demo.echo", "input": {"text": "a"}}
    assert http.post("/v1/tasks", json=task).status_code == 202
    assert http.post("/v1/tasks", json=task).status_code == 429
    sync = http.post("/v1/capabilities/demo.echo", json={"text": "b"})
    assert (sync.status_code, sync.json()["error"]["code"]) == (429, "QUEUE_FULL")
    metrics = http.get("/metrics").text
    assert 'crank_requests_rejected_total{reason="queue_full"} 2.0' in metrics


def test_request_and_trace_ids_reach_the_task(services: Any, client: Any) -> None:
    trace = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    r = client.post(
        "/v1/tasks",
        json={"capability": "demo.echo", "input": {"text": "t"}},
        headers={"X-Request-ID": "req-123", "traceparent": trace, "X-Crank-Caller": "app-1"},
    )
    assert r.headers["x-request-id"] == "req-123"
    meta = services.broker.get(r.json()["id"]).meta
    assert (meta["request_id"], meta["trace_id"], meta["caller"]) == (
        "req-123",
        "0af7651916cd43dd8448eb211c80319c",
        "app-1",
    )
