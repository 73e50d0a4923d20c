"""OpenTelemetry spans when the ``otel`` extra is installed, a no-op without it."""

from __future__ import annotations

import time
from typing import Any

import pytest

from crank.runtime import tracing


def test_without_otel_spans_are_no_ops(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tracing, "otel_available", lambda: False)
    with tracing.span("anything", {"a": 1}) as current:
        assert current is None
    assert tracing.current_trace_id() is None


@pytest.mark.requires("opentelemetry.sdk", hint="pip install 'crank-workers[otel]'")
def test_requests_and_submissions_become_spans(client: Any) -> None:
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    r = client.post("/v1/tasks", json={"capability": "demo.echo", "input": {"text": "t"}})
    assert r.status_code == 202
    # the request span ends just after the response went out: wait for it
    deadline = time.monotonic() + 60
    while True:
        spans = {s.name: s for s in exporter.get_finished_spans()}
        if {"POST /v1/tasks", "crank.submit"} <= set(spans) or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    assert {"POST /v1/tasks", "crank.submit"} <= set(spans)
    request_span, submit_span = spans["POST /v1/tasks"], spans["crank.submit"]
    assert submit_span.parent is not None
    assert submit_span.parent.span_id == request_span.context.span_id
    assert submit_span.attributes["crank.capability"] == "demo.echo"
    assert request_span.attributes["crank.request_id"] == r.headers["x-request-id"]
    exporter.clear()
