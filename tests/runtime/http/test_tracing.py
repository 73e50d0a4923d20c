"""OpenTelemetry spans when a tracer provider is installed, a no-op without one; the
caller's W3C trace context is the parent of crank's spans and travels with the task."""

from __future__ import annotations

import time
from typing import Any

import pytest

from crank.runtime import tracing

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"


def test_without_a_tracer_provider_spans_are_no_ops(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tracing, "tracing_active", lambda: False)
    with tracing.span("anything", {"a": 1}, parent={"traceparent": TRACEPARENT}) as current:
        assert current is None
    assert tracing.current_trace_id() is None
    assert tracing.current_traceparent() is None


@pytest.mark.parametrize(
    ("header", "trace_id"),
    [
        (TRACEPARENT, CALLER_TRACE),
        (f"00-{'0' * 32}-{CALLER_SPAN}-01", None),  # the all-zero trace id is invalid
        ("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", None),  # upper case
        ("garbage", None),
        (None, None),
    ],
)
def test_trace_id_of_a_traceparent(header: str | None, trace_id: str | None) -> None:
    assert tracing.trace_id_of(header) == trace_id


def finished(exporter: Any, names: set[str]) -> dict[str, Any]:
    # the request span ends just after the response went out: wait for it
    deadline = time.monotonic() + 60
    while True:
        found = {s.name: s for s in exporter.get_finished_spans()}
        if names <= set(found) or time.monotonic() > deadline:
            return found
        time.sleep(0.01)


@pytest.mark.requires("opentelemetry.sdk", hint="pip install 'crank-workers[otel]'")
def test_requests_and_submissions_become_spans(client: Any, spans: Any) -> None:
    r = client.post("/v1/tasks", json={"capability": "demo.echo", "input": {"text": "t"}})
    assert r.status_code == 202
    found = finished(spans, {"POST /v1/tasks", "crank.submit"})
    request_span, submit_span = found["POST /v1/tasks"], found["crank.submit"]
    assert submit_span.parent is not None
    assert submit_span.parent.span_id == request_span.context.span_id
    assert submit_span.attributes["crank.capability"] == "demo.echo"
    assert request_span.attributes["crank.request_id"] == r.headers["x-request-id"]
    assert request_span.parent is None  # no traceparent came: a trace of its own


@pytest.mark.requires("opentelemetry.sdk", hint="pip install 'crank-workers[otel]'")
def test_the_callers_traceparent_is_the_parent_and_travels_with_the_task(
    client: Any, services: Any, spans: Any
) -> None:
    r = client.post(
        "/v1/tasks",
        json={"capability": "demo.echo", "input": {"text": "t"}},
        headers={"traceparent": TRACEPARENT, "tracestate": "vendor=1"},
    )
    assert r.status_code == 202
    found = finished(spans, {"POST /v1/tasks", "crank.submit"})
    request_span, submit_span = found["POST /v1/tasks"], found["crank.submit"]
    # one trace: the caller's, with the caller's span as the request span's parent
    assert f"{request_span.context.trace_id:032x}" == CALLER_TRACE
    assert request_span.parent is not None and request_span.parent.is_remote
    assert f"{request_span.parent.span_id:016x}" == CALLER_SPAN
    assert request_span.context.trace_state.get("vendor") == "1"
    assert submit_span.parent.span_id == request_span.context.span_id
    # the task carries the submit span as its parent, and the trace id for the logs
    meta = services.broker.get(r.json()["id"]).meta
    assert meta["trace_id"] == CALLER_TRACE
    assert meta["traceparent"] == (f"00-{CALLER_TRACE}-{submit_span.context.span_id:016x}-01")
