"""The ASGI middleware in front of every route.

In order: request/trace ids (``X-Request-ID``, W3C ``traceparent``), the bearer
token (not under ``console_prefix``: the console checks its own session cookie),
the in-flight bound (429 + ``Retry-After``), a declared body over the
limit (413), then the route inside an OpenTelemetry span that continues the
caller's trace (its ``traceparent`` is the span's parent); the access log line
and the request counter come last. Written as plain ASGI (not
``BaseHTTPMiddleware``) so streaming responses pass through untouched.
"""

from __future__ import annotations

import os
import re
import time
from typing import TYPE_CHECKING, Any

from crank.runtime.http.auth import authorized
from crank.runtime.http.responses import error_response
from crank.runtime.logs import LineLogger, bind_ids, clear_ids
from crank.runtime.tracing import TRACEPARENT, span, trace_id_of

if TYPE_CHECKING:
    from collections.abc import Iterable

    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from crank.runtime.config import AccessLogMode
    from crank.runtime.http.limits import InflightLimiter
    from crank.runtime.metrics import ServerMetrics

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
#: Seconds a client refused for overload should wait before trying again.
RETRY_AFTER_S = 1


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def request_ids(scope: Scope) -> tuple[str, str]:
    """(request_id, trace_id): taken from the client when well-formed, else new."""
    rid = _header(scope, b"x-request-id")
    if rid is None or not _REQUEST_ID.match(rid):
        rid = os.urandom(16).hex()  # uuid4().hex without the UUID object: a tenth of the cost
    trace_id = trace_id_of(_header(scope, b"traceparent")) or os.urandom(16).hex()
    return rid, trace_id


def trace_context(scope: Scope) -> dict[str, str] | None:
    """The caller's W3C trace context (``traceparent``, ``tracestate``), when well-formed."""
    parent = _header(scope, b"traceparent")
    if trace_id_of(parent) is None:
        return None
    context = {TRACEPARENT: str(parent)}
    state = _header(scope, b"tracestate")
    if state:
        context["tracestate"] = state
    return context


#: the templates of the routes with parameters, by their number of segments: each
#: template's segments (None: a parameter) and its label.
RouteTemplates = dict[int, tuple[tuple[tuple[str | None, ...], str], ...]]


def route_templates(paths: Iterable[str]) -> RouteTemplates:
    """The templates of the routes with parameters, each parameter labelled ``{id}``
    (one whose first segment is a parameter, a catch-all, is left out)."""
    found: dict[int, list[tuple[tuple[str | None, ...], str]]] = {}
    for path in paths:
        segments = path.split("/")
        if len(segments) < 2 or segments[1].startswith("{"):
            continue
        params = tuple(None if s.startswith("{") else s for s in segments)
        label = "/".join("{id}" if s is None else s for s in params)
        found.setdefault(len(params), []).append((params, label))
    return {count: tuple(templates) for count, templates in found.items()}


def metric_route(
    path: str,
    known: frozenset[str],
    console_prefix: str | None = None,
    templates: RouteTemplates | None = None,
) -> str:
    """A bounded label for ``path``: the route itself, its template, the console's prefix,
    or ``other``."""
    if path in known:
        return path
    if console_prefix is not None and _under(path, console_prefix):
        return console_prefix
    segments = path.split("/")
    for params, label in (templates or {}).get(len(segments), ()):
        for param, segment in zip(params, segments, strict=True):
            if (param != segment) if param is not None else not segment:
                break
        else:
            return label
    return "other"


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + "/")


class GuardMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        token: str | None,
        limiter: InflightLimiter,
        max_body_bytes: int,
        metrics: ServerMetrics,
        public_paths: frozenset[str] = frozenset(),
        known_paths: frozenset[str] = frozenset(),
        console_prefix: str | None = None,
        templates: RouteTemplates | None = None,
        access_log: AccessLogMode = "on",
    ) -> None:
        self.app = app
        #: the least status that gets an access log line (``CRANK_ACCESS_LOG``): every
        #: one, the errors only, or none (a line costs the server about a fifth of the
        #: CPU of a small synchronous call: benchmarks/RESULTS.md).
        self.log_from_status = {"on": 0, "errors": 400, "off": 1000}[access_log]
        #: paths that check their own session (the console) instead of the bearer token.
        self.console_prefix = console_prefix
        #: the routes with parameters, for the metrics label of a path not in known_paths.
        self.templates = templates
        #: no token, no in-flight slot, no access log line when they answer well.
        self.public_paths = public_paths
        #: the paths that are their own metrics label (the rest: a template or "other").
        self.known_paths = known_paths | public_paths
        self.token = token
        self.limiter = limiter
        self.max_body_bytes = max_body_bytes
        self.metrics = metrics
        self._log: Any = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        method: str = scope["method"]
        rid, trace_id = request_ids(scope)
        clear_ids()
        bind_ids(request_id=rid, trace_id=trace_id)
        scope.setdefault("state", {})
        caller_trace = trace_context(scope)
        scope["state"]["request_id"] = rid
        scope["state"]["trace_id"] = trace_id
        #: passed on with a task when no span of ours is recorded (see routes._submit)
        scope["state"][TRACEPARENT] = caller_trace[TRACEPARENT] if caller_trace else None
        status_holder = {"status": 500}
        started = time.perf_counter()

        async def send_with_ids(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = int(message["status"])
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", rid.encode()))
                message = {**message, "headers": headers}
            await send(message)

        rejection = self._reject(scope, path)
        if rejection is not None:
            reason, response = rejection
            self.metrics.rejected.labels(reason).inc()
            await response(scope, receive, send_with_ids)
            self._finish(method, path, status_holder["status"], started, self._logger())
            return
        acquired = path in self.public_paths or self.limiter.try_acquire()
        if not acquired:
            self.metrics.rejected.labels("overload").inc()
            response = error_response(
                429,
                "OVERLOADED",
                f"the server is serving {self.limiter.limit} request(s) at once already, its "
                "bound (CRANK_MAX_INFLIGHT, shared among its HTTP processes)",
                hint=f"retry after {RETRY_AFTER_S} s; a synchronous call, a ?wait= long-poll "
                "or an event stream holds its place until it answers",
                headers={"Retry-After": str(RETRY_AFTER_S)},
            )
            await response(scope, receive, send_with_ids)
            self._finish(method, path, 429, started, self._logger())
            return
        try:
            attrs = {"http.method": method, "http.route": path, "crank.request_id": rid}
            with span(f"{method} {path}", attrs, parent=caller_trace, kind="SERVER") as current:
                if current is not None:  # a new trace when the caller sent none: log its id
                    trace_id = f"{current.get_span_context().trace_id:032x}"
                    scope["state"]["trace_id"] = trace_id
                    bind_ids(trace_id=trace_id)
                await self.app(scope, receive, send_with_ids)
        finally:
            if path not in self.public_paths:
                self.limiter.release()
            self._finish(method, path, status_holder["status"], started, self._logger())

    def _logger(self) -> Any:
        """The access log's logger: the same line as structlog's, written directly."""
        if self._log is None:
            self._log = LineLogger()
        return self._log

    def _reject(self, scope: Scope, path: str) -> tuple[str, Any] | None:
        console = self.console_prefix is not None and _under(path, self.console_prefix)
        authorization = _header(scope, b"authorization")
        if not console and not authorized(path, authorization, self.token, self.public_paths):
            return "unauthorized", error_response(
                401,
                "UNAUTHORIZED",
                "a valid bearer token is required",
                hint="send 'Authorization: Bearer <CRANK_API_TOKEN>'",
                headers={"WWW-Authenticate": 'Bearer realm="crank"'},
            )
        declared = _header(scope, b"content-length")
        if path in self.public_paths:  # probes read no body: nothing to refuse
            return None
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            return "body_too_large", error_response(
                413,
                "BODY_TOO_LARGE",
                f"request body is larger than {self.max_body_bytes} bytes",
                hint="send a smaller body, or raise CRANK_MAX_BODY_BYTES on the server",
            )
        return None

    def _finish(self, method: str, path: str, status: int, started: float, log: Any) -> None:
        route = metric_route(path, self.known_paths, self.console_prefix, self.templates)
        self.metrics.child(self.metrics.http_requests, method, route, str(status)).inc()
        if status < self.log_from_status or (path in self.public_paths and status < 400):
            return
        log.info(
            "http_request",
            method=method,
            path=path,
            status=status,
            duration_ms=round(1000 * (time.perf_counter() - started), 2),
        )


__all__ = ["RETRY_AFTER_S", "GuardMiddleware", "metric_route", "request_ids", "trace_context"]
