"""The endpoint handlers. Blocking broker calls run in worker threads."""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import TYPE_CHECKING, Any

from crank.errors import CapabilityGone, CapabilityNotFound, CrankError, ValidationFailed
from crank.runtime.gateway import CapabilityPaused, QueueFull, caller_name
from crank.runtime.http.guard import RETRY_AFTER_S
from crank.runtime.http.limits import BodyTooLarge, read_body
from crank.runtime.http.responses import error_response
from crank.runtime.http.sse import MAX_EVENT_ID

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping

    from starlette.requests import Request
    from starlette.responses import Response

    from crank.runtime.brokers.contract import TaskRecord
    from crank.runtime.gateway import PreparedCall
    from crank.runtime.http.app import RuntimeServices

MAX_IDEMPOTENCY_KEY = 200
_EVENT_ID = re.compile(r"[0-9]{1,19}")


def _seconds_to_utc_midnight() -> int:
    now = dt.datetime.now(dt.UTC)
    tomorrow = dt.datetime.combine(now.date() + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)
    return max(1, int((tomorrow - now).total_seconds()))


def error_for(exc: BaseException) -> Response:
    """The HTTP answer for an error raised while preparing or running a call."""
    if isinstance(exc, CapabilityGone):
        return error_response(
            410, "CAPABILITY_GONE", exc.message, hint=exc.hint, successors=list(exc.successors)
        )
    if isinstance(exc, CapabilityNotFound):
        return error_response(404, "CAPABILITY_NOT_FOUND", exc.message, hint=exc.hint)
    if isinstance(exc, ValidationFailed):
        return error_response(400, "INVALID_INPUT", exc.message, hint=exc.hint, errors=exc.errors)
    if isinstance(exc, BodyTooLarge):
        return error_response(413, "BODY_TOO_LARGE", exc.message, hint=exc.hint)
    if isinstance(exc, QueueFull):
        return error_response(
            429,
            "QUEUE_FULL",
            exc.message,
            hint=exc.hint,
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )
    if isinstance(exc, CapabilityPaused):
        return error_response(
            503,
            "CAPABILITY_PAUSED",
            exc.message,
            hint=exc.hint,
            headers={"Retry-After": str(_seconds_to_utc_midnight())},
        )
    if isinstance(exc, CrankError):
        # BrokerError and other deliberate errors of the backend
        return error_response(503, "UNAVAILABLE", exc.message, hint=exc.hint)
    from crank.runtime.logs import get_logger

    get_logger("crank.runtime.http").error("broker_failure", exc_info=exc)
    return error_response(
        503,
        "BROKER_UNAVAILABLE",
        f"the task broker failed: {type(exc).__name__}",
        hint="check that the broker (SQLite file or Redis) is reachable; the call was not queued",
    )


async def _json_body(request: Request, limit: int) -> Any:
    raw = await read_body(request, limit)
    if not raw.strip():
        raise ValidationFailed(
            "the request body is empty",
            hint="send a JSON object",
            errors=[{"path": "$", "message": "a JSON body is required"}],
        )
    try:
        return json.loads(raw)
    except RecursionError:
        raise ValidationFailed(
            "the request body nests too deeply",
            hint="send a flatter JSON document",
            errors=[{"path": "$", "message": "nested too deeply"}],
        ) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValidationFailed(
            f"the request body is not JSON: {exc}",
            hint="send a JSON object with Content-Type: application/json",
            errors=[{"path": "$", "message": "not valid JSON"}],
        ) from None


def _idempotency_key(request: Request) -> str | None:
    key = request.headers.get("idempotency-key")
    if key is None:
        return None
    if not key.strip() or len(key) > MAX_IDEMPOTENCY_KEY:
        raise ValidationFailed(
            f"Idempotency-Key must be 1..{MAX_IDEMPOTENCY_KEY} characters",
            hint="use a UUID per logical request",
            errors=[{"path": "header:Idempotency-Key", "message": "invalid length"}],
        )
    return key


def _resume_after(request: Request) -> int:
    """The number of the last event the client has: ``Last-Event-ID``, else ``?after=``, else 0."""
    header = request.headers.get("last-event-id")
    if header is not None:
        raw, name, where = header, "Last-Event-ID", "header:Last-Event-ID"
    else:
        query = request.query_params.get("after")
        if query is None:
            return 0
        raw, name, where = query, "after", "query:after"
    if _EVENT_ID.fullmatch(raw) and int(raw) <= MAX_EVENT_ID:
        return int(raw)
    raise ValidationFailed(
        f"{name} must be the number of the last event received (an integer >= 0), not {raw[:40]!r}",
        hint="send the `id` of the last event the client received (Last-Event-ID: 3 or ?after=3), "
        "or leave it out to start from the first event",
        errors=[{"path": where, "message": f"not an integer from 0 to {MAX_EVENT_ID}"}],
    )


def _task_not_found(task_id: str) -> Response:
    return error_response(
        404,
        "TASK_NOT_FOUND",
        f"no task {task_id!r}",
        hint="tasks expire after their result TTL",
    )


def _task_doc(record: TaskRecord) -> dict[str, Any]:
    doc = record.as_dict()
    requested = record.meta.get("requested") if record.meta else None
    doc["requested"] = requested if isinstance(requested, str) else record.capability
    return doc


def _wants_sse(request: Request) -> bool:
    return "text/event-stream" in request.headers.get("accept", "")


def _timed_out(call: PreparedCall, record: TaskRecord, headers: Mapping[str, str]) -> Response:
    location = f"/v1/tasks/{record.id}"
    return error_response(
        504,
        "TIMEOUT",
        f"{call.target} did not finish within {call.capability.timeout_s:g} s",
        hint=f"the task goes on; poll {location}",
        headers={**headers, "Location": location},
        id=record.id,
    )


class Handlers:
    def __init__(self, services: RuntimeServices) -> None:
        self.s = services

    # -- probes and documents --------------------------------------------------

    async def health(self, request: Request) -> Response:
        from starlette.responses import JSONResponse

        return JSONResponse({"status": "ok"})

    async def ready(self, request: Request) -> Response:
        from starlette.concurrency import run_in_threadpool
        from starlette.responses import JSONResponse

        ok, problems = await run_in_threadpool(self.s.status.ready)
        return JSONResponse(
            {"status": "ready" if ok else "not ready", "problems": problems},
            status_code=200 if ok else 503,
        )

    async def metrics(self, request: Request) -> Response:
        from starlette.concurrency import run_in_threadpool
        from starlette.responses import Response

        body, content_type = await run_in_threadpool(self.s.metrics.render)
        return Response(body, media_type=content_type)

    async def openapi(self, request: Request) -> Response:
        from starlette.responses import JSONResponse

        return JSONResponse(self.s.openapi)

    async def status(self, request: Request) -> Response:
        from starlette.concurrency import run_in_threadpool
        from starlette.responses import JSONResponse

        return JSONResponse(await run_in_threadpool(self.s.status.report))

    async def capabilities(self, request: Request) -> Response:
        from starlette.responses import JSONResponse

        router = self.s.router
        paused = self.s.status.paused()
        live = [
            {
                "id": r.capability_id,
                "version": r.capability.version,
                "worker": r.worker,
                "description": r.capability.description,
                "streaming": r.capability.streaming,
                "essential": r.capability.essential,
                "timeout_s": r.capability.timeout_s,
                "paused": r.capability_id in paused,
                "input": r.capability.input,
                "output": r.capability.output,
            }
            for r in router.routes()
        ]
        deprecated = [
            {
                "id": d.id,
                "replaced_by": list(d.replaced_by),
                "sunset": d.sunset.isoformat(),
                "gone": router.is_gone(d.id),
                "legacy_routes": list(d.legacy_routes),
            }
            for d in router.deprecations()
        ]
        return JSONResponse({"capabilities": live, "deprecated": deprecated})

    # -- tasks -----------------------------------------------------------------

    async def _prepare(self, request: Request, ref: str, payload: Any) -> PreparedCall:
        from starlette.concurrency import run_in_threadpool

        caller = caller_name(request.headers.get("x-crank-caller"))
        return await run_in_threadpool(self.s.gateway.prepare, ref, payload, caller=caller)

    async def _submit(self, request: Request, call: PreparedCall, priority: int = 0) -> TaskRecord:
        from starlette.concurrency import run_in_threadpool

        from crank.runtime.logs import bind_ids
        from crank.runtime.tracing import span

        meta = {
            "request_id": request.scope.get("state", {}).get("request_id"),
            "trace_id": request.scope.get("state", {}).get("trace_id"),
        }
        key = _idempotency_key(request)
        with span("crank.submit", {"crank.capability": call.target}):
            record = await run_in_threadpool(
                lambda: self.s.gateway.submit(
                    call, priority=priority, idempotency_key=key, meta=meta
                )
            )
        bind_ids(task_id=record.id, capability=call.target)
        self.s.metrics.submitted.labels(call.target).inc()
        return record

    async def submit_task(self, request: Request) -> Response:
        from starlette.responses import JSONResponse

        try:
            body = await _json_body(request, self.s.config.max_body_bytes)
            if not isinstance(body, dict):
                raise ValidationFailed(
                    "the body must be a JSON object {capability, input, priority?}",
                    errors=[{"path": "$", "message": "not an object"}],
                )
            ref, payload, priority = (
                body.get("capability"),
                body.get("input", {}),
                body.get("priority", 0),
            )
            problems = []
            if not isinstance(ref, str) or not ref:
                problems.append(
                    {"path": "$.capability", "message": "a capability id (string) is required"}
                )
            if (
                isinstance(priority, bool)
                or not isinstance(priority, int)
                or not -100 <= priority <= 100
            ):
                problems.append({"path": "$.priority", "message": "an integer from -100 to 100"})
            if problems:
                raise ValidationFailed(
                    f"invalid task envelope: {problems[0]['path']}: {problems[0]['message']}",
                    hint="send {capability, input, priority?}",
                    errors=problems,
                )
            call = await self._prepare(request, str(ref), payload)
            record = await self._submit(request, call, priority)
        except Exception as exc:
            return error_for(exc)
        location = f"/v1/tasks/{record.id}"
        return JSONResponse(
            {**_task_doc(record), "location": location},
            status_code=202,
            headers={"Location": location, **call.resolution.headers},
        )

    async def get_task(self, request: Request) -> Response:
        from starlette.concurrency import run_in_threadpool
        from starlette.responses import JSONResponse

        task_id = request.path_params["task_id"]
        try:
            record = await run_in_threadpool(self.s.broker.get, task_id)
        except Exception as exc:
            return error_for(exc)
        if record is None:
            return _task_not_found(task_id)
        return JSONResponse(_task_doc(record))

    async def task_events(self, request: Request) -> Response:
        """The SSE stream of a streaming task, resumed after ``Last-Event-ID`` (or ``?after=``).

        Always Server-Sent Events: 200 as soon as the checks pass, then the
        events live, then ``event: end`` or ``event: error`` (a failure, or no end
        within the capability's ``timeout_s`` counted from this request).
        """
        import time

        from starlette.concurrency import run_in_threadpool
        from starlette.responses import StreamingResponse

        from crank.runtime.http.sse import live_events

        task_id = request.path_params["task_id"]
        try:
            after = _resume_after(request)
            record = await run_in_threadpool(self.s.broker.get, task_id)
        except Exception as exc:
            return error_for(exc)
        if record is None:
            return _task_not_found(task_id)
        route = self.s.router.route(record.capability)
        if route is None or not route.capability.streaming:
            why = "is not served here" if route is None else "does not stream events"
            return error_response(
                409,
                "NOT_STREAMING",
                f"task {task_id!r} is a call of {record.capability}, which {why}",
                hint=f"read its status and result with GET /v1/tasks/{task_id}",
                id=task_id,
                capability=record.capability,
            )
        timeout_s = route.capability.timeout_s
        body = live_events(
            self.s.broker,
            task_id,
            [],
            after=after,
            deadline=time.monotonic() + timeout_s,
            timeout_s=timeout_s,
            is_disconnected=request.is_disconnected,
        )
        return StreamingResponse(
            body,
            media_type="text/event-stream",
            headers={
                "X-Crank-Task-Id": task_id,
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            },
        )

    async def call_capability(self, request: Request) -> Response:
        return await self._call(request, request.path_params["capability_id"])

    async def legacy(self, request: Request) -> Response:
        return await self._call(request, self.s.router.legacy_routes()[request.url.path])

    async def _wait(self, task_id: str, timeout_s: float) -> TaskRecord | None:
        """Poll the broker until the task is done; sleeps on the event loop, not on a thread.

        A waiting synchronous caller must not hold one of the threadpool's threads
        for seconds: with many of them, every other request would queue behind.
        """
        import asyncio
        import time

        from starlette.concurrency import run_in_threadpool

        deadline = time.monotonic() + timeout_s
        delay = 0.002
        while True:
            record = await run_in_threadpool(self.s.broker.get, task_id)
            if record is not None and record.done:
                return record
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            await asyncio.sleep(min(delay, left))
            # poll closely for the first second (most calls end there), then gently
            cap = 0.01 if timeout_s - left < 1.0 else 0.05
            delay = min(delay * 2, cap)

    async def _call(self, request: Request, ref: str) -> Response:
        """Submit, then wait for the result up to the capability's timeout (504 after)."""
        import time

        started = time.perf_counter()
        try:
            payload = await _json_body(request, self.s.config.max_body_bytes)
            call = await self._prepare(request, ref, payload)
            record = await self._submit(request, call)
            if call.capability.streaming and _wants_sse(request):
                return await self._stream(request, call, record, started)
            done = await self._wait(record.id, call.capability.timeout_s)
        except Exception as exc:
            return error_for(exc)
        headers = {"X-Crank-Task-Id": record.id, **call.resolution.headers}
        self.s.metrics.sync_duration.labels(call.target).observe(time.perf_counter() - started)
        if done is None:
            return _timed_out(call, record, headers)
        return self._result(request, call, done, headers)

    async def _stream(
        self, request: Request, call: PreparedCall, record: TaskRecord, started: float
    ) -> Response:
        """SSE forwarded live: answer once the first event is out (or the task ended)."""
        import time

        from starlette.responses import StreamingResponse

        from crank.runtime.http.sse import first_look, live_events

        timeout_s = call.capability.timeout_s
        deadline = time.monotonic() + timeout_s
        first = await first_look(self.s.broker, record.id, deadline)
        headers = {"X-Crank-Task-Id": record.id, **call.resolution.headers}
        self.s.metrics.sync_duration.labels(call.target).observe(time.perf_counter() - started)
        if first is None:
            return _timed_out(call, record, headers)
        if first.finished and first.record is not None:
            # ended before any event was published (it failed first, or its worker
            # does not publish events): the answer of a finished task
            return self._result(request, call, first.record, headers)
        body = live_events(
            self.s.broker,
            record.id,
            first.events,
            deadline=deadline,
            timeout_s=timeout_s,
            is_disconnected=request.is_disconnected,
        )
        return StreamingResponse(
            body,
            media_type="text/event-stream",
            headers={**headers, "Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    def _result(
        self, request: Request, call: PreparedCall, done: TaskRecord, headers: Mapping[str, str]
    ) -> Response:
        from starlette.responses import JSONResponse, StreamingResponse

        if done.status != "succeeded":
            error = dict(done.error or {})
            code = str(error.get("code", "WORKER_FAILED"))
            declared = call.capability.error(code) is not None
            return error_response(
                422 if declared else 502,
                code if declared else "WORKER_FAILED",
                str(error.get("message", f"task {done.id} {done.status}")),
                hint=f"task {done.id} ended {done.status} after {done.attempts} attempt(s)",
                headers=headers,
                id=done.id,
                task_error=error,
            )
        if not call.capability.streaming:
            return JSONResponse(done.result, headers=dict(headers))
        events = list(done.result) if isinstance(done.result, list) else [done.result]
        if not _wants_sse(request):
            return JSONResponse({"events": events}, headers=dict(headers))
        from crank.runtime.http.sse import format_end, format_event

        async def stream() -> AsyncIterator[bytes]:
            # the task ended before a live event was seen: its result holds them all
            for number, event in enumerate(events, start=1):
                yield format_event(number, event)
            yield format_end(done.id, len(events))

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={**headers, "Cache-Control": "no-cache"},
        )


__all__ = ["Handlers", "error_for"]
