"""One trace per call, HTTP -> queue -> worker: W3C trace context in, OpenTelemetry spans out.

An incoming ``traceparent`` header is the parent of crank's spans: the request span
(kind SERVER), its child ``crank.submit``, and, in the worker process that runs the
task, ``crank.task <capability>`` (kind CONSUMER), whose parent travels with the
task as ``meta["traceparent"]``. Every log line of the request and of the task
carries that trace's id (``trace_id``).

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
    from collections.abc import Iterator, Mapping

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
        from opentelemetry.propagate import extract

        carrier = {k: str(parent[k]) for k in (TRACEPARENT, TRACESTATE) if parent.get(k)}
        context = extract(carrier)
    attrs = {k: v for k, v in (attributes or {}).items() if isinstance(v, (str, bool, int, float))}
    tracer = trace.get_tracer("crank")
    with tracer.start_as_current_span(
        name, context=context, kind=getattr(trace.SpanKind, kind), attributes=attrs
    ) as current:
        yield current


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
    Without a tracer provider only the ids are bound (this runs for every task)."""
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
    "configure_tracing",
    "current_trace_id",
    "current_traceparent",
    "new_traceparent",
    "otel_available",
    "span",
    "task_trace",
    "trace_id_of",
    "tracing_active",
]
