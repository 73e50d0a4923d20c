"""One trace per call, HTTP -> queue -> worker: W3C trace context in, OpenTelemetry spans out.

An incoming ``traceparent`` header is the parent of crank's spans: the request span
(kind SERVER), its child ``crank.submit``, and, in the worker process that runs the
task, ``crank.task <capability>`` (kind CONSUMER), whose parent travels with the
task as ``meta["traceparent"]``. Every log line of the request and of the task
carries that trace's id (``trace_id``). The tasks of a batch each keep their span;
the batch call is one more, linked to them (:func:`batch_trace`).

Spans are recorded when a tracer provider is installed: by the application, by
``opentelemetry-instrument``, or by :func:`configure_tracing`, which ``crank run``
and its worker processes call. It reads:

* ``CRANK_TRACES_FILE=PATH``: every process appends its finished spans to PATH, one
  JSON object per line (the SDK's console exporter; for a look without a collector);
* ``OTEL_TRACES_EXPORTER=otlp|console|...``: the exporter of that name the installed
  OpenTelemetry packages register (``otlp`` needs opentelemetry-exporter-otlp); the
  usual ``OTEL_*`` variables configure it and the resource (``OTEL_SERVICE_NAME``).

Without a provider (or without the ``otel`` extra) nothing is imported and every
call here is a cheap no-op, but the trace id still flows: it is taken from the
incoming ``traceparent`` (or made), logged, and passed on with the task.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.util
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crank.errors import UsageError
from crank.runtime.logs import bound_ids

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence

    from crank.runtime.brokers.contract import TaskRecord

TRACES_FILE_ENV = "CRANK_TRACES_FILE"
EXPORTER_ENV = "OTEL_TRACES_EXPORTER"
EXPORTER_GROUP = "opentelemetry_traces_exporter"
TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$")
#: Set by :func:`configure_tracing` when it installed the provider.
_configured = False


@functools.cache  # spans are opened per request and per task: look the package up once
def otel_available() -> bool:
    return importlib.util.find_spec("opentelemetry") is not None and (
        importlib.util.find_spec("opentelemetry.trace") is not None
    )


def _otel_trace() -> Any:
    # Imported by name: the otel extra is optional, so type checkers may not see it.
    return importlib.import_module("opentelemetry.trace")


def tracing_active() -> bool:
    """Whether spans are recorded: a real tracer provider is installed (crank's, or one
    the application or ``opentelemetry-instrument`` set). Imports nothing otherwise."""
    if _configured:
        return True
    if "opentelemetry.trace" not in sys.modules:
        return False
    trace = sys.modules["opentelemetry.trace"]
    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


def trace_id_of(traceparent: str | None) -> str | None:
    """The 32-hex trace id of a well-formed ``traceparent`` (W3C), else None."""
    match = _TRACEPARENT.match(traceparent or "")
    return match.group(1) if match and match.group(1) != "0" * 32 else None


def new_traceparent(trace_id: str | None = None) -> str:
    """A ``traceparent`` for ``trace_id`` (or a new trace) with a new parent span id."""
    return f"00-{trace_id or os.urandom(16).hex()}-{os.urandom(8).hex()}-01"


#: what :func:`span` gives when spans are not recorded: one shared context manager
#: yielding None (no generator made per request).
_NO_SPAN: contextlib.AbstractContextManager[None] = contextlib.nullcontext()


def span(
    name: str,
    attributes: Mapping[str, Any] | None = None,
    *,
    parent: Mapping[str, Any] | None = None,
    kind: str = "INTERNAL",
) -> contextlib.AbstractContextManager[Any]:
    """A span named ``name`` (None when spans are not recorded).

    ``parent``: a carrier holding a W3C ``traceparent`` (and ``tracestate``), such as
    a request's headers or a task's ``meta``; the span continues that trace. Without
    it the span is a child of the current one. ``kind``: ``SERVER``, ``CONSUMER``...
    """
    if not tracing_active():
        return _NO_SPAN
    return _recorded_span(name, attributes, parent, kind)


@contextlib.contextmanager
def _recorded_span(
    name: str,
    attributes: Mapping[str, Any] | None,
    parent: Mapping[str, Any] | None,
    kind: str,
) -> Iterator[Any]:
    trace = _otel_trace()
    context = None
    if parent is not None and parent.get(TRACEPARENT):
        context = _context_of(parent)
    attrs = {k: v for k, v in (attributes or {}).items() if isinstance(v, (str, bool, int, float))}
    tracer = trace.get_tracer("crank")
    with tracer.start_as_current_span(
        name, context=context, kind=getattr(trace.SpanKind, kind), attributes=attrs
    ) as current:
        yield current


def _context_of(carrier: Mapping[str, Any]) -> Any:
    """The OpenTelemetry context a carrier's ``traceparent`` (and ``tracestate``) names;
    without one, an empty context (a span started in it begins a trace)."""
    from opentelemetry.propagate import extract

    return extract({k: str(carrier[k]) for k in (TRACEPARENT, TRACESTATE) if carrier.get(k)})


def current_trace_id() -> str | None:
    """The active span's trace id as 32 hex digits, if spans are recorded and one is open."""
    if not tracing_active():
        return None
    ctx = _otel_trace().get_current_span().get_span_context()
    return f"{ctx.trace_id:032x}" if ctx.trace_id else None


def current_traceparent() -> str | None:
    """The W3C ``traceparent`` of the active span (what a child in another process
    continues from), if spans are recorded and one is open."""
    if not tracing_active():
        return None
    from opentelemetry.propagate import inject

    carrier: dict[str, str] = {}
    inject(carrier)
    return carrier.get(TRACEPARENT)


def task_trace(
    task_id: str, capability: str, meta: Mapping[str, Any]
) -> contextlib.AbstractContextManager[Any]:
    """Around one task in a worker process: its span ``crank.task <capability>``, a
    child of the span that submitted it (``meta["traceparent"]``), and the task's ids
    (``task_id``, ``capability``, ``request_id``, ``trace_id``) on every log line.
    Gives the span (end it with the task's outcome: :func:`record_outcome`), or None
    without a tracer provider: then only the ids are bound (this runs for every task)."""
    if tracing_active():
        return _traced_task(task_id, capability, meta)
    return bound_ids(
        task_id=task_id,
        capability=capability,
        request_id=meta.get("request_id"),
        trace_id=meta.get("trace_id") or trace_id_of(meta.get(TRACEPARENT)),
    )


@contextlib.contextmanager
def _traced_task(task_id: str, capability: str, meta: Mapping[str, Any]) -> Iterator[Any]:
    attributes = {"crank.task_id": task_id, "crank.capability": capability}
    with contextlib.ExitStack() as stack:
        current = stack.enter_context(
            span(f"crank.task {capability}", attributes, parent=meta, kind="CONSUMER")
        )
        trace_id = f"{current.get_span_context().trace_id:032x}"
        stack.enter_context(
            bound_ids(
                task_id=task_id,
                capability=capability,
                request_id=meta.get("request_id"),
                trace_id=trace_id,
            )
        )
        yield current


def record_outcome(current: Any, error: Mapping[str, Any] | None) -> None:
    """End-of-task status on the task's span ``current`` (None: spans are not recorded):
    ``OK``, or ``ERROR`` with ``CODE: message`` and ``error.type`` the error's code."""
    if current is None:
        return
    from opentelemetry.trace import Status, StatusCode

    if error is None:
        current.set_status(Status(StatusCode.OK))
        return
    code = str(error.get("code") or "INTERNAL")
    current.set_attribute("error.type", code)
    current.set_status(Status(StatusCode.ERROR, f"{code}: {error.get('message', '')}"))


class BatchTrace:
    """Around one batch handler call in a worker process: what :func:`batch_trace` gives.

    Without a tracer provider it only binds the batch's ids to the log lines written
    meanwhile; :meth:`record` is then a no-op.
    """

    __slots__ = ("_ids",)

    def __init__(self, ids: bound_ids) -> None:
        self._ids = ids

    def __enter__(self) -> BatchTrace:
        self._ids.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._ids.__exit__(*exc)

    def record(self, errors: Sequence[Mapping[str, Any] | None]) -> None:
        """What each item came to, in the batch's order: None if it succeeded, else its
        error (``{"code": ..., "message": ...}``). Its span ends with that status."""


def batch_trace(capability: str, tasks: Sequence[TaskRecord], reason: str | None) -> BatchTrace:
    """Around one call of ``capability``'s batch handler for ``tasks``.

    Each task gets the span it would get alone (``crank.task <capability>``, kind
    CONSUMER, a child of the span that submitted it, so each request's trace goes
    on), with ``crank.batch.size`` and ``crank.batch.release_reason``; it covers the
    batch call and ends with that task's outcome (:meth:`BatchTrace.record`). The
    call itself is one span, ``crank.batch <capability>``, current while the handler
    runs (the handler's own spans are its children), with a link to each task's span,
    and each task's span links back to it.

    Log lines written meanwhile carry ``capability``, ``task_ids`` and ``trace_ids``
    (the tasks' ids and their traces' ids, in the batch's order), and, when spans are
    recorded, ``trace_id``: the batch span's own trace.

    Whether spans are recorded is asked once per batch: without a tracer provider
    this costs a list of ids per batch, nothing else.
    """
    task_ids = [task.id for task in tasks]
    if tracing_active():
        return _TracedBatch(capability, tasks, reason, task_ids)
    trace_ids = [
        task.meta.get("trace_id") or trace_id_of(task.meta.get(TRACEPARENT)) for task in tasks
    ]
    return BatchTrace(bound_ids(capability=capability, task_ids=task_ids, trace_ids=trace_ids))


class _TracedBatch(BatchTrace):
    __slots__ = ("_batch", "_current", "_errors", "_items", "_spans")

    def __init__(
        self, capability: str, tasks: Sequence[TaskRecord], reason: str | None, task_ids: list[str]
    ) -> None:
        trace = _otel_trace()
        tracer = trace.get_tracer("crank")
        shared: dict[str, Any] = {"crank.capability": capability, "crank.batch.size": len(tasks)}
        if reason is not None:
            shared["crank.batch.release_reason"] = reason
        self._items = [
            tracer.start_span(
                f"crank.task {capability}",
                context=_context_of(task.meta),
                kind=trace.SpanKind.CONSUMER,
                attributes={"crank.task_id": task.id, **shared},
            )
            for task in tasks
        ]
        contexts = [item.get_span_context() for item in self._items]
        self._batch = tracer.start_span(
            f"crank.batch {capability}",
            kind=trace.SpanKind.INTERNAL,
            attributes=shared,
            links=[
                trace.Link(context, {"crank.task_id": task_id})
                for context, task_id in zip(contexts, task_ids, strict=True)
            ],
        )
        batch_context = self._batch.get_span_context()
        for item in self._items:
            # from the task's trace to the call that served it (and its other tasks)
            item.add_link(batch_context, {"crank.batch.size": len(tasks)})
        self._errors: Sequence[Mapping[str, Any] | None] | None = None
        self._current = trace.use_span(self._batch, end_on_exit=False)
        super().__init__(
            bound_ids(
                capability=capability,
                task_ids=task_ids,
                trace_ids=[f"{c.trace_id:032x}" for c in contexts],
                trace_id=f"{batch_context.trace_id:032x}",
            )
        )

    def __enter__(self) -> BatchTrace:
        self._current.__enter__()
        return super().__enter__()

    def record(self, errors: Sequence[Mapping[str, Any] | None]) -> None:
        self._errors = errors

    def __exit__(self, *exc: object) -> None:
        super().__exit__(*exc)
        self._current.__exit__(None, None, None)
        from opentelemetry.trace import Status, StatusCode

        raised = exc[1] if len(exc) > 1 and isinstance(exc[1], BaseException) else None
        errors: Sequence[Mapping[str, Any] | None]
        if raised is not None:  # the call itself failed: so did every task of it
            error = {"code": type(raised).__name__, "message": str(raised) or repr(raised)}
            errors = [error] * len(self._items)
        else:
            errors = self._errors or [None] * len(self._items)
        for item, outcome in zip(self._items, errors, strict=True):
            record_outcome(item, outcome)
        failed = sum(outcome is not None for outcome in errors)
        self._batch.set_attribute("crank.batch.failed", failed)
        if self._items and failed == len(self._items):  # the handler raised, or nothing worked
            self._batch.set_status(Status(StatusCode.ERROR, "every task of the batch failed"))
        self._batch.end()
        for item in self._items:  # after the batch's: each task's span covers the call
            item.end()


def configure_tracing(service_name: str = "crank") -> bool:
    """Install a tracer provider exporting where the environment says (module docstring);
    leave one the application installed alone. Returns whether spans are recorded.

    A variable that cannot be honoured (no OpenTelemetry SDK, an exporter nobody
    registers) is a :class:`~crank.errors.UsageError`, not a silent no-op.
    """
    global _configured
    path = os.environ.get(TRACES_FILE_ENV, "").strip()
    exporter_names = [
        n.strip() for n in os.environ.get(EXPORTER_ENV, "").split(",") if n.strip() != "none"
    ]
    exporter_names = [n for n in exporter_names if n]
    if not path and not exporter_names:
        return tracing_active()
    if tracing_active():
        return True  # someone installed a provider already: theirs wins
    asked = f"{TRACES_FILE_ENV}" if path else f"{EXPORTER_ENV}={','.join(exporter_names)}"
    if importlib.util.find_spec("opentelemetry.sdk") is None:
        raise UsageError(
            f"{asked} asks for traces, but the OpenTelemetry SDK is not installed",
            hint="pip install 'crank-workers[otel]', or unset it",
            subject=asked,
        )
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        ConsoleSpanExporter,
        SimpleSpanProcessor,
    )

    # process.pid tells the server's spans from each worker process's
    resource = Resource.create(
        {
            "service.name": os.environ.get("OTEL_SERVICE_NAME") or service_name,
            "process.pid": os.getpid(),
        }
    )
    provider = TracerProvider(resource=resource)
    for name in exporter_names:
        provider.add_span_processor(BatchSpanProcessor(_registered_exporter(name)()))
    if path:
        try:
            out = Path(path).open("a", encoding="utf-8")  # noqa: SIM115 - kept for the process's life
        except OSError as exc:
            raise UsageError(
                f"{TRACES_FILE_ENV}={path}: cannot append to it: {exc.strerror or exc}",
                hint="point it at a writable file",
                subject=path,
            ) from None
        # One line per span, written when it ends: a process that is killed loses none.
        lines = ConsoleSpanExporter(out=out, formatter=lambda s: s.to_json(indent=None) + "\n")
        provider.add_span_processor(SimpleSpanProcessor(lines))
    trace.set_tracer_provider(provider)
    _configured = True
    return True


def _registered_exporter(name: str) -> Any:
    from importlib import metadata  # here: its email parser is ~1.5 MB of every process

    found = metadata.entry_points(group=EXPORTER_GROUP, name=name)
    if not found:
        known = sorted(ep.name for ep in metadata.entry_points(group=EXPORTER_GROUP))
        raise UsageError(
            f"{EXPORTER_ENV}={name}: no installed OpenTelemetry package provides that exporter",
            hint=f"installed: {', '.join(known) or 'none'} (otlp: pip install "
            "opentelemetry-exporter-otlp)",
            subject=name,
        )
    return next(iter(found)).load()


__all__ = [
    "EXPORTER_ENV",
    "TRACEPARENT",
    "TRACES_FILE_ENV",
    "BatchTrace",
    "batch_trace",
    "configure_tracing",
    "current_trace_id",
    "current_traceparent",
    "new_traceparent",
    "otel_available",
    "record_outcome",
    "span",
    "task_trace",
    "trace_id_of",
    "tracing_active",
]
