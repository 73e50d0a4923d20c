"""The HTTP routes: each handler with the route it answers and its OpenAPI operation.

:data:`ROUTES` is the route table, filled by the ``@ROUTES.route(...)``
declarations on :class:`Handlers` in the order they are matched and documented
(vocabulary in :mod:`.operations`). Blocking broker calls run in worker threads.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.responses import Response, StreamingResponse

from crank.runtime.brokers import contract as broker_contract
from crank.runtime.http.answers import error_for, rejection_reason, task_doc, task_not_found
from crank.runtime.http.capability_operations import (
    CALLER,
    IDEMPOTENCY_KEY,
    capability_calls,
    legacy_calls,
    streamed_events,
    task_envelopes,
)
from crank.runtime.http.dead_letter_control import (
    LIST_DEAD_LETTERS,
    PURGE_ALL,
    PURGE_ONE,
    REDRIVE_ALL,
    REDRIVE_ONE,
    DeadLetterControl,
)
from crank.runtime.http.operations import (
    ANNOUNCED_REFUSALS,
    BODY_ERRORS,
    BROKER_DOWN,
    DEPRECATION_HEADERS,
    GUARD_ERRORS,
    JSON_OBJECT,
    KEY_REUSED,
    LOCATION,
    NO_PARAMETERS,
    SUBMIT_LIMITS,
    TASK_ID,
    TASK_NOT_JSON,
    Header,
    Operation,
    Param,
    Reply,
    RouteTable,
    component_ref,
    errors,
)
from crank.runtime.http.request_parsing import (
    MAX_TASK_WAIT_S,
    caller,
    idempotency_key,
    json_body,
    only_parameters,
    resume_after,
    stream_wait,
    task_envelope,
    task_wait,
)
from crank.runtime.http.responses import (
    JSONResponse,
    error_response,
    json_or_not_json,
    not_json,
)
from crank.runtime.http.sse import (
    MAX_EVENT_ID,
    event_frame,
    first_look,
    format_end,
    live_events,
)
from crank.runtime.http.task_control import CANCEL_TASK, LIST_TASKS, TaskControl
from crank.runtime.logs import bind_ids
from crank.runtime.tracing import TRACEPARENT, current_traceparent, span

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator, Mapping

    from starlette.requests import Request

    from crank.routing import Router
    from crank.runtime.brokers.contract import TaskRecord
    from crank.runtime.concurrency import Admitted
    from crank.runtime.gateway import PreparedCall
    from crank.runtime.http.services import RuntimeServices

#: The route table: every route, its handler and its operation, in matching order.
ROUTES = RouteTable()


def _wants_sse(request: Request) -> bool:
    """Whether ``Accept`` prefers ``text/event-stream`` to JSON (by their q values)."""
    accept = request.headers.get("accept", "").lower()  # (asked of streaming calls only)
    if "text/event-stream" not in accept:
        return False
    sse = json = 0.0
    for part in accept.split(","):
        media, _, params = part.partition(";")
        media = media.strip()
        if media == "text/event-stream":
            sse = max(sse, _quality(params))
        elif media in ("application/json", "application/*", "*/*"):
            json = max(json, _quality(params))
    return sse > 0 and sse >= json


def _quality(params: str) -> float:
    """The ``q`` of a media range's parameters (1 when absent or unreadable)."""
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip() == "q":
            try:
                return min(1.0, max(0.0, float(value)))
            except ValueError:
                return 1.0
    return 1.0


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


def _ended_badly(call: PreparedCall, done: TaskRecord, headers: Mapping[str, str]) -> Response:
    """The answer of a synchronous call whose task did not succeed: 409 cancelled, 422 its
    declared error, 502 the worker's failure (ValueError: its error is not JSON)."""
    if done.status == "cancelled":
        error = dict(done.error or {})
        return error_response(
            409,
            "CANCELLED",
            f"task {done.id} was cancelled before it finished",
            hint=f"someone cancelled it (DELETE /v1/tasks/{done.id}); send the call again "
            "to run it",
            headers=headers,
            id=done.id,
            task_error=error,
            task_status=done.status,
            attempts=done.attempts,
        )
    error = dict(done.error or {})
    code = str(error.get("code", "WORKER_FAILED"))
    # the caller's fault (failed) or a declared error: 422 with its code; a crash,
    # an undeclared error or a task that kept dying: the worker failed (502)
    declared = done.status == "failed" or call.capability.error(code) is not None
    return error_response(
        422 if declared else 502,
        code if declared else "WORKER_FAILED",
        str(error.get("message", f"task {done.id} {done.status}")),
        hint=f"task {done.id} ended {done.status} after {done.attempts} attempt(s)",
        headers=headers,
        id=done.id,
        task_error=error,
        task_status=done.status,
        attempts=done.attempts,
    )


# -- what the routes declare for /openapi.json -----------------------------------------------

_TASK_ID = Param("task_id", "path", {"type": "string"}, required=True)
_BAD_WAIT = (
    f"?wait= is not a number of seconds from 0 to {MAX_TASK_WAIT_S}, or a query parameter "
    "the route does not take."
)
_WAIT = Param(
    "wait",
    "query",
    {"type": "number", "minimum": 0, "maximum": MAX_TASK_WAIT_S, "default": 0},
    description=(
        "Seconds to wait for an unfinished task to end before answering (a long-poll); "
        "0 answers at once."
    ),
)
_STREAM_WAIT = Param(
    "wait",
    "query",
    {"type": "number", "minimum": 0},
    description=(
        "The most seconds to stream before the task ends: then `event: error` with code "
        "TIMEOUT and no status (the task goes on). Default and most: the capability's "
        "timeout_s."
    ),
)
_EVENT_ID_SCHEMA = {"type": "integer", "minimum": 0, "maximum": MAX_EVENT_ID}
_PLAIN_JSON = {"application/json": JSON_OBJECT}
_TASK_JSON = {"application/json": component_ref("Task")}
#: a task queued through a deprecated id, or refused once the envelope named one, also
#: carries its Deprecation headers.
_MAY_BE_DEPRECATED = {
    name: Header(h.schema, h.description) for name, h in DEPRECATION_HEADERS.items()
}
_QUEUED_HEADERS = {"Location": LOCATION, **_MAY_BE_DEPRECATED}


def _events_operation(router: Router) -> Iterator[tuple[str, Operation]]:
    """``GET /v1/tasks/{task_id}/events``: its events are those of the streaming capabilities."""
    yield (
        "/v1/tasks/{task_id}/events",
        Operation(
            operation_id="streamTaskEvents",
            summary="A streaming task's events as Server-Sent Events, live, resumable.",
            description=(
                "Events numbered above Last-Event-ID (or ?after=; the header wins, both are "
                "checked), each as `id: <n>` / `event: message` / `data: <json>`, then "
                "`event: end` or `event: error`. Always text/event-stream, whatever the Accept "
                "header."
            ),
            parameters=(
                _TASK_ID,
                Param(
                    "Last-Event-ID",
                    "header",
                    _EVENT_ID_SCHEMA,
                    description="The id of the last event received; later ones are sent.",
                ),
                Param(
                    "after",
                    "query",
                    _EVENT_ID_SCHEMA,
                    description="Like Last-Event-ID, for clients that cannot set headers.",
                ),
                _STREAM_WAIT,
            ),
            responses=(
                Reply(
                    200, "The event stream.", streamed_events(router), {"X-Crank-Task-Id": TASK_ID}
                ),
                *errors(
                    *GUARD_ERRORS,
                    (400, "Last-Event-ID, ?after= or ?wait= cannot be used, or another parameter."),
                    404,
                    (409, "The task's capability does not stream events; read the task instead."),
                    BROKER_DOWN,
                ),
            ),
        ),
    )


class Handlers(TaskControl, DeadLetterControl):
    """The endpoints; each is registered on :data:`ROUTES` with its operation (those of
    :class:`~crank.runtime.http.task_control.TaskControl` and
    :class:`~crank.runtime.http.dead_letter_control.DeadLetterControl` with the operations
    declared there, in the order below)."""

    def __init__(self, services: RuntimeServices, *, openapi: Mapping[str, Any]) -> None:
        self.s = services
        self._openapi = dict(openapi)

    # -- probes and documents --------------------------------------------------

    @ROUTES.route(
        "GET",
        "/health",
        Operation(
            operation_id="health",
            summary="Liveness: every worker's check_liveness() holds, every process reports.",
            responses=(Reply(200, "Alive.", _PLAIN_JSON), Reply(503, "Not live.", _PLAIN_JSON)),
        ),
        public=True,
    )
    async def health(self, request: Request) -> Response:
        ok, problems = await run_in_threadpool(self.s.status.live)
        return JSONResponse(
            {"status": "ok" if ok else "not live", "problems": problems},
            status_code=200 if ok else 503,
        )

    @ROUTES.route(
        "GET",
        "/ready",
        Operation(
            operation_id="ready",
            summary="Readiness: broker reachable, min workers healthy, every worker ready.",
            responses=(Reply(200, "Ready.", _PLAIN_JSON), Reply(503, "Not ready.", _PLAIN_JSON)),
        ),
        public=True,
    )
    async def ready(self, request: Request) -> Response:
        ok, problems = await run_in_threadpool(self.s.status.ready)
        return JSONResponse(
            {"status": "ready" if ok else "not ready", "problems": problems},
            status_code=200 if ok else 503,
        )

    @ROUTES.route(
        "GET",
        "/metrics",
        Operation(
            operation_id="metrics",
            summary="Prometheus metrics.",
            responses=(Reply(200, "Text exposition format.", {"text/plain": {"type": "string"}}),),
        ),
        public=True,
    )
    async def metrics(self, request: Request) -> Response:
        body, content_type = await run_in_threadpool(self.s.metrics.render)
        return Response(body, media_type=content_type)

    @ROUTES.route("GET", "/openapi.json")  # the document does not describe itself
    async def openapi(self, request: Request) -> Response:
        return JSONResponse(self._openapi)

    @ROUTES.route(
        "GET",
        "/v1/status",
        Operation(
            operation_id="status",
            summary="System health report.",
            responses=(
                Reply(200, "The report.", _PLAIN_JSON),
                *errors(*GUARD_ERRORS, NO_PARAMETERS),
            ),
        ),
    )
    async def status(self, request: Request) -> Response:
        try:
            only_parameters(request)
        except Exception as exc:
            return error_for(exc)
        return JSONResponse(await run_in_threadpool(self.s.status.report))

    @ROUTES.route(
        "GET",
        "/v1/capabilities",
        Operation(
            operation_id="listCapabilities",
            summary="Capabilities with their schemas.",
            responses=(
                Reply(200, "Live and deprecated capabilities.", _PLAIN_JSON),
                *errors(*GUARD_ERRORS, NO_PARAMETERS),
            ),
        ),
    )
    async def capabilities(self, request: Request) -> Response:
        try:  # ?id= would filter nothing: the whole list would look like the answer
            only_parameters(request)
        except Exception as exc:
            return error_for(exc)
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

    def _prepare(
        self, request: Request, ref: str, payload: Any, *, where: str = "$"
    ) -> PreparedCall:
        """Route and validate on the event loop: CPU only, microseconds (no thread hop);
        problems are reported at JSON paths under ``where``."""
        return self.s.gateway.prepare(ref, payload, caller=caller(request), where=where)

    def _refusal(self, exc: Exception, ref: str | None = None) -> Response:
        """The answer for an error of a submit or a call of ``ref`` (None: not read yet);
        a refusal before queueing (a paused capability, a full queue...) is counted in
        ``crank_requests_rejected_total``. A refusal of a call to a deprecated id carries
        its deprecation headers, as its success would: the client sending wrong input is
        the one that most needs to hear the id is going away."""
        reason = rejection_reason(exc)
        if reason is not None:
            metrics = self.s.metrics
            metrics.child(metrics.rejected, reason).inc()
        response = error_for(exc)
        if ref is not None and response.status_code in ANNOUNCED_REFUSALS:
            response.headers.update(self.s.router.announcement(ref))
        return response

    async def _submit(
        self, request: Request, call: PreparedCall, priority: int = 0, *, watch: bool = False
    ) -> TaskRecord:
        """Queue the call through the broker I/O thread (grouped with concurrent submits);
        ``watch``: this process is told when the task ends (forget it after waiting)."""
        state = request.scope.get("state", {})
        await self.s.gateway.refresh_stats()
        with span("crank.submit", {"crank.capability": call.target}):
            # the worker's span continues from this one (or from the caller's, unrecorded)
            parent = current_traceparent() or state.get(TRACEPARENT)
            meta = {"request_id": state.get("request_id"), "trace_id": state.get("trace_id")}
            spec = self.s.gateway.task_spec(
                call,
                priority=priority,
                idempotency_key=idempotency_key(request),
                meta={**meta, TRACEPARENT: parent} if parent else meta,
            )
            record = await self.s.gateway.submit(spec, watch=watch)
        bind_ids(task_id=record.id, capability=call.target)
        self.s.metrics.child(self.s.metrics.submitted, call.target).inc()
        return record

    @ROUTES.route(
        "POST",
        "/v1/tasks",
        Operation(
            operation_id="submitTask",
            summary="Queue a task; answers 202 with its id and Location.",
            parameters=(IDEMPOTENCY_KEY, CALLER),
            request_body=task_envelopes,
            responses=(
                Reply(202, "Queued.", _TASK_JSON, _QUEUED_HEADERS),
                *(
                    r.with_headers(_MAY_BE_DEPRECATED) if r.status in ANNOUNCED_REFUSALS else r
                    for r in errors(
                        *BODY_ERRORS,
                        *GUARD_ERRORS,
                        SUBMIT_LIMITS,
                        404,
                        KEY_REUSED,
                        410,
                        # a repeat of the submit (same Idempotency-Key) answers the task
                        TASK_NOT_JSON,
                        503,
                    )
                ),
            ),
        ),
    )
    async def submit_task(self, request: Request) -> Response:
        ref: str | None = None
        try:
            only_parameters(request)  # ?priority= is not the envelope's priority
            body = await json_body(request, self.s.config.max_body_bytes)
            ref, payload, priority = task_envelope(body)
            call = self._prepare(request, ref, payload, where="$.input")
            record = await self._submit(request, call, priority)
        except Exception as exc:
            return self._refusal(exc, ref)
        location = f"/v1/tasks/{record.id}"
        return json_or_not_json(  # a repeat (same Idempotency-Key) answers the task as it is
            {**task_doc(record), "location": location},
            record.id,
            status_code=202,
            headers={"Location": location, **call.resolution.headers},
        )

    list_tasks = ROUTES.route("GET", "/v1/tasks", LIST_TASKS)(TaskControl.list_tasks)

    @ROUTES.route(
        "GET",
        "/v1/tasks/{task_id}",
        Operation(
            operation_id="getTask",
            summary="A task's status, result or error; ?wait= waits for its end first.",
            description=(
                "With `?wait=SECONDS` an unfinished task is answered as soon as it ends "
                "(this server is told when it does; nothing polls), or as it stands after "
                "that long: still 200, with its status (pending, running, retrying). "
                "The wait holds one of the server's in-flight requests."
            ),
            parameters=(_TASK_ID, _WAIT),
            responses=(
                Reply(200, "The task (ended, or as it stands when the wait ran out).", _TASK_JSON),
                *errors(*GUARD_ERRORS, (400, _BAD_WAIT), 404, TASK_NOT_JSON, BROKER_DOWN),
            ),
        ),
    )
    async def get_task(self, request: Request) -> Response:
        task_id = request.path_params["task_id"]
        try:
            only_parameters(request, "wait")
            wait_s = task_wait(request)
            record = await self.s.gateway.io.get(task_id)
            if record is not None and not record.done and wait_s > 0:
                record = await self._wait_for_end(task_id, wait_s)
        except Exception as exc:
            return error_for(exc)
        if record is None:
            return task_not_found(task_id)
        return json_or_not_json(task_doc(record, with_input=True), task_id)

    async def _wait_for_end(self, task_id: str, wait_s: float) -> TaskRecord | None:
        """The task once it ended, or as it stands after ``wait_s``, read from the broker
        (so the answer is the one a plain GET gives next); None once it is gone.

        Woken by the task's notice (watched here first, so an end after the watch is
        always told); the broker is also read every ``SAFETY_POLL_S`` in case a notice
        was lost, and, without notices, every 10 ms.
        """
        io, broker = self.s.gateway.io, self.s.broker
        notices = broker.result_notices()
        deadline = time.monotonic() + wait_s
        if notices is None:
            while (left := deadline - time.monotonic()) > 0:
                await asyncio.sleep(min(left, 0.01))
                found = await io.get(task_id)
                if found is None or found.done:
                    return found
            return await io.get(task_id)
        notices.expect([task_id])
        try:
            [status] = await io.call(lambda: broker.watch([task_id]))
            ended = status is None or status in broker_contract.FINAL_STATUSES
            while not ended and (left := deadline - time.monotonic()) > 0:
                notice = await notices.wait_async(task_id, min(left, broker_contract.SAFETY_POLL_S))
                if notice is not None and not notice.ended:
                    continue  # a streaming task's event: it goes on
                found = await io.get(task_id)
                if found is None or found.done:
                    return found
        finally:
            notices.forget(task_id)
        return await io.get(task_id)

    cancel_task = ROUTES.route("DELETE", "/v1/tasks/{task_id}", CANCEL_TASK)(
        TaskControl.cancel_task
    )

    list_dead_letters = ROUTES.route("GET", "/v1/dead-letters", LIST_DEAD_LETTERS)(
        DeadLetterControl.list_dead_letters
    )
    purge_dead_letters = ROUTES.route(
        "DELETE", "/v1/capabilities/{capability}/dead-letters", PURGE_ALL
    )(DeadLetterControl.purge_dead_letters)
    redrive_dead_letters = ROUTES.route(
        "POST", "/v1/capabilities/{capability}/dead-letters/redrive", REDRIVE_ALL
    )(DeadLetterControl.redrive_dead_letters)
    purge_dead_letter = ROUTES.route("DELETE", "/v1/dead-letters/{task_id}", PURGE_ONE)(
        DeadLetterControl.purge_dead_letter
    )
    redrive_dead_letter = ROUTES.route("POST", "/v1/dead-letters/{task_id}/redrive", REDRIVE_ONE)(
        DeadLetterControl.redrive_dead_letter
    )

    @ROUTES.route("GET", "/v1/tasks/{task_id}/events", documents=_events_operation)
    async def task_events(self, request: Request) -> Response:
        """The SSE stream of a streaming task, resumed after ``Last-Event-ID`` (or ``?after=``).

        Always Server-Sent Events: 200 as soon as the checks pass, then the
        events live, then ``event: end`` or ``event: error`` (a failure, or no end
        within the capability's ``timeout_s``, or the ``?wait=`` asked for if shorter,
        counted from this request).
        """
        task_id = request.path_params["task_id"]
        try:
            only_parameters(request, "after", "wait")
            after = resume_after(request)
            wait_s = stream_wait(request)
            record = await self.s.gateway.io.get(task_id)
        except Exception as exc:
            return error_for(exc)
        if record is None:
            return task_not_found(task_id)
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
        if wait_s is not None:
            timeout_s = min(timeout_s, wait_s)
        io = self.s.gateway.io
        notices = self.s.broker.result_notices()
        if notices is not None:  # told of each event and of the end while streaming
            notices.expect([task_id])
            try:
                await io.call(lambda: self.s.broker.watch([task_id]))
            except Exception as exc:
                notices.forget(task_id)
                return error_for(exc)
        body = live_events(
            self.s.broker,
            task_id,
            [],
            after=after,
            deadline=time.monotonic() + timeout_s,
            timeout_s=timeout_s,
            is_disconnected=request.is_disconnected,
            io=io,
            notices=notices,
            on_close=None if notices is None else lambda: notices.forget(task_id),
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

    # documented once per capability: the manifests give each its schemas
    @ROUTES.route("POST", "/v1/capabilities/{capability_id}", documents=capability_calls)
    async def call_capability(self, request: Request) -> Response:
        return await self._call(request, request.path_params["capability_id"], legacy=False)

    # mounted at every legacy path the manifests declare ("/{legacy_path}" names them),
    # each documented as the deprecated capability it calls
    @ROUTES.route(
        "POST",
        "/{legacy_path}",
        documents=legacy_calls,
        mounts=lambda router: router.legacy_routes(),
    )
    async def legacy(self, request: Request) -> Response:
        return await self._call(
            request, self.s.router.legacy_routes()[request.url.path], legacy=True
        )

    async def _wait(self, record: TaskRecord, timeout_s: float) -> TaskRecord | None:
        """The watched task once it ended, woken by its notice; None after ``timeout_s``.

        No thread waits and nothing polls: the notice of the task's end (pushed by
        whoever stored its outcome) resolves this request's future on the event loop,
        and carries the outcome when it is small. The broker is read only when it did
        not, or when no notice came for ``SAFETY_POLL_S`` (one was lost: a listener
        reconnecting after a broker restart).
        """
        if record.done:  # an idempotent repeat of a call that already ended
            return record
        notices = self.s.broker.result_notices()
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            told = False  # a notice of the task's end came (an outcome too large for it
            # to carry is then read from the broker)
            if notices is not None and left > 0:
                notice = await notices.wait_async(
                    record.id, min(left, broker_contract.SAFETY_POLL_S)
                )
                told = notice is not None and notice.status != broker_contract.EVENT
                finished = None if notice is None else notice.finish(record)
                if finished is not None:
                    self._ended_by("notice")
                    return finished
            elif left > 0:  # a backend that sends no notices
                await asyncio.sleep(min(left, 0.01))
            found = await self.s.gateway.io.get(record.id)
            if found is not None and found.done:
                self._ended_by("notice" if told else "read")
                return found
            if time.monotonic() >= deadline:
                return None

    def _ended_by(self, how: str) -> None:
        metrics = self.s.metrics
        metrics.child(metrics.sync_waits, how).inc()

    async def _call(self, request: Request, ref: str, *, legacy: bool) -> Response:
        """Submit, then wait for the result up to the capability's timeout (504 after).

        A capability at its ``max_concurrency`` answers 429 before anything is queued.
        A query parameter is refused (400), except on a legacy route: its old clients may
        send what the service it replaces ignored.
        """
        started = time.perf_counter()
        record: TaskRecord | None = None
        admitted: Admitted | None = None
        streaming = False
        try:
            if not legacy:
                only_parameters(request)
            payload = await json_body(request, self.s.config.max_body_bytes)
            call = self._prepare(request, ref, payload)
            admitted = self.s.admission.admit(call.target)
            record = await self._submit(request, call, watch=True)
            if call.capability.streaming and _wants_sse(request):
                streaming = True
                return await self._stream(request, call, record, started, admitted)
            done = await self._wait(record, call.capability.timeout_s)
        except Exception as exc:
            return self._refusal(exc, ref)
        finally:
            if not streaming:  # a stream does both when it ends
                if record is not None:
                    self._forget(record.id)
                if admitted is not None:
                    admitted.release()
        headers = {"X-Crank-Task-Id": record.id, **call.resolution.headers}
        self._observe_call(call, started)
        if done is None:
            return _timed_out(call, record, headers)
        return self._result(request, call, done, headers)

    async def _stream(
        self,
        request: Request,
        call: PreparedCall,
        record: TaskRecord,
        started: float,
        admitted: Admitted,
    ) -> Response:
        """SSE forwarded live: answer once the first event is out (or the task ended)."""
        timeout_s = call.capability.timeout_s
        deadline = time.monotonic() + timeout_s
        io, notices = self.s.gateway.io, self.s.broker.result_notices()
        # the stream forgets the watched task and lets its concurrency slot go when it
        # ends, however it ends (the client may leave); any other answer does it here
        handed_over = False
        try:
            first = await first_look(self.s.broker, record.id, deadline, io=io, notices=notices)
            headers = {"X-Crank-Task-Id": record.id, **call.resolution.headers}
            self._observe_call(call, started)
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
                io=io,
                notices=notices,
                on_close=lambda: self._end_stream(record.id, admitted),
            )
            handed_over = True
            return StreamingResponse(
                body,
                media_type="text/event-stream",
                headers={**headers, "Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        finally:
            if not handed_over:
                self._end_stream(record.id, admitted)

    def _observe_call(self, call: PreparedCall, started: float) -> None:
        metrics = self.s.metrics
        metrics.child(metrics.sync_duration, call.target).observe(time.perf_counter() - started)

    def _end_stream(self, task_id: str, admitted: Admitted) -> None:
        self._forget(task_id)
        admitted.release()

    def _forget(self, task_id: str) -> None:
        notices = self.s.broker.result_notices()
        if notices is not None:
            notices.forget(task_id)

    def _result(
        self, request: Request, call: PreparedCall, done: TaskRecord, headers: Mapping[str, str]
    ) -> Response:
        if done.status != "succeeded":
            try:
                return _ended_badly(call, done, headers)
            except ValueError:  # its stored error holds a NaN or an infinity
                error = not_json(done.id, done.error, subject=f"the error of task {done.id}")
                return JSONResponse({"error": error}, status_code=500, headers=dict(headers))
        subject = f"the result of task {done.id}"
        if not call.capability.streaming:
            return json_or_not_json(done.result, done.id, subject=subject, headers=headers)
        events = list(done.result) if isinstance(done.result, list) else [done.result]
        if not _wants_sse(request):
            return json_or_not_json({"events": events}, done.id, subject=subject, headers=headers)

        async def stream() -> AsyncIterator[bytes]:
            # the task ended before a live event was seen: its result holds them all
            for number, event in enumerate(events, start=1):
                frame, goes_on = event_frame(done.id, number, event)
                yield frame
                if not goes_on:
                    return
            yield format_end(done.id, len(events))

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={**headers, "Cache-Control": "no-cache"},
        )


__all__ = ["ROUTES", "Handlers", "error_for"]
