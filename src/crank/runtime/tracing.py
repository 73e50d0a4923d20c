"""OpenTelemetry spans when the ``otel`` extra is installed; nothing otherwise.

``pip install 'crank-workers[otel]'`` brings opentelemetry-api/sdk; crank then opens a
span per HTTP request and per submitted task under the tracer ``crank``. The
exporter is whatever the application configured on the global tracer provider
(OTLP, console, in-memory in tests). Without the extra every call here is a
cheap no-op.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping


@functools.cache  # two spans per request: looking the package up each time showed
def otel_available() -> bool:
    return importlib.util.find_spec("opentelemetry") is not None and (
        importlib.util.find_spec("opentelemetry.trace") is not None
    )


def _otel_trace() -> Any:
    # Imported by name: the otel extra is optional, so type checkers may not see it.
    return importlib.import_module("opentelemetry.trace")


@contextlib.contextmanager
def span(name: str, attributes: Mapping[str, Any] | None = None) -> Iterator[Any]:
    """A span named ``name`` (or None without OpenTelemetry)."""
    if not otel_available():
        yield None
        return
    trace = _otel_trace()
    tracer = trace.get_tracer("crank")
    attrs = {k: v for k, v in (attributes or {}).items() if isinstance(v, (str, bool, int, float))}
    with tracer.start_as_current_span(name, attributes=attrs) as current:
        yield current


def current_trace_id() -> str | None:
    """The active span's trace id as 32 hex digits, if any."""
    if not otel_available():
        return None
    ctx = _otel_trace().get_current_span().get_span_context()
    return f"{ctx.trace_id:032x}" if ctx.trace_id else None


__all__ = ["current_trace_id", "otel_available", "span"]
