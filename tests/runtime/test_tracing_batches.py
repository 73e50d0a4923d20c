"""``batch_trace`` in this process: what a batch's log lines carry without a tracer
provider, and the spans of a batch call that did not return (the worker-process view
of the usual cases is tests/runtime/serve/test_run_batch_traces.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import structlog

from crank.runtime import tracing
from crank.runtime.brokers.contract import TaskRecord

TRACES = ["4bf92f3577b34da6a3ce929d0e0e4736", "5bf92f3577b34da6a3ce929d0e0e4737"]


def tasks() -> list[TaskRecord]:
    return [
        TaskRecord("t1", "batching.square", {"n": 1}, "running", meta={"trace_id": TRACES[0]}),
        # no trace id of its own: the one its traceparent names
        TaskRecord(
            "t2",
            "batching.square",
            {"n": 2},
            "running",
            meta={"traceparent": f"00-{TRACES[1]}-00f067aa0ba902b7-01"},
        ),
        TaskRecord("t3", "batching.square", {"n": 3}, "running"),
    ]


def test_without_a_tracer_provider_a_batch_binds_its_ids_and_nothing_else(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(tracing, "tracing_active", lambda: False)
    structlog.contextvars.bind_contextvars(request_id="outer")
    try:
        with tracing.batch_trace("batching.square", tasks(), "full") as traced:
            assert type(traced) is tracing.BatchTrace  # no span, no OpenTelemetry call
            assert structlog.contextvars.get_contextvars() == {
                "request_id": "outer",
                "capability": "batching.square",
                "task_ids": ["t1", "t2", "t3"],
                "trace_ids": [*TRACES, None],
            }
            traced.record([None, {"code": "REFUSED", "message": "no"}, None])
        assert structlog.contextvars.get_contextvars() == {"request_id": "outer"}
    finally:
        structlog.contextvars.clear_contextvars()


@pytest.mark.requires("opentelemetry.sdk", hint="pip install 'crank-workers[otel]'")
def test_a_batch_call_that_does_not_return_ends_every_tasks_span_in_error(spans: Any) -> None:
    from opentelemetry.trace import StatusCode

    # the task loop stopped under the call
    with (
        pytest.raises(asyncio.CancelledError),
        tracing.batch_trace("batching.square", tasks(), None),
        tracing.span("the handler's own work"),
    ):
        raise asyncio.CancelledError("the task loop stopped")
    finished = spans.get_finished_spans()
    own = next(s for s in finished if s.name == "the handler's own work")
    (batch,) = (s for s in finished if s.name == "crank.batch batching.square")
    items = [s for s in finished if s.name == "crank.task batching.square"]
    # the handler's spans are the batch span's children
    assert own.parent is not None and own.parent.span_id == batch.context.span_id
    assert [s.attributes["crank.task_id"] for s in items] == ["t1", "t2", "t3"]
    assert "crank.batch.release_reason" not in batch.attributes  # not known: not said
    for item in items:
        assert item.status.status_code is StatusCode.ERROR
        assert item.status.description == "CancelledError: the task loop stopped"
    # t2 continues the trace its traceparent names; t3 (none) starts one
    assert f"{items[1].context.trace_id:032x}" == TRACES[1]
    assert items[2].parent is None
    assert batch.status.status_code is StatusCode.ERROR
    assert batch.attributes["crank.batch.failed"] == 3
