"""Each API request of the HTTP clients, and what its outcome means, written once.

:mod:`.http` and :mod:`.async_http` build a :class:`Planned` request here, send it
their own way (``for``/``async for`` over the retries, ``sleep``/``await sleep``),
and hand every failure and answer back here, so the two clients differ only in
how they send and wait.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx

from crank.client.errors import ApiError, ClientError, ServerUnreachable, TaskTimeout
from crank.client.tasks import (
    TaskInfo,
    TaskList,
    check_id,
    check_idempotency_key,
    check_timeout,
    encode_json,
)
from crank.client.waiting import deadline_of, seconds_left
from crank.client.wire import (
    RETRIED_TRANSPORT_ERRORS,
    RetryLater,
    backoff_s,
    body_of,
    cancel_not_supported,
    deprecation_of,
    error_of,
    new_idempotency_key,
    socket_timeout,
    unbounded_read,
    unreachable,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

    from crank.client.errors import CapabilityDeprecated
    from crank.client.wire import EventCursor, RetryPolicy

#: What sending a request may fail with, before an answer that counts.
SEND_FAILURES: tuple[type[Exception], ...] = (
    RetryLater,
    httpx.TimeoutException,
    *RETRIED_TRANSPORT_ERRORS,
)
#: What reading a task's events may fail with, and be resumed after (a timeout other
#: than a read's: no connection of the pool came free, a write stalled).
EVENT_FAILURES: tuple[type[Exception], ...] = (
    RetryLater,
    TaskTimeout,
    httpx.TimeoutException,
    *RETRIED_TRANSPORT_ERRORS,
)
#: seconds a read may go on past the caller's deadline for the answer to arrive (the
#: server answers a wait at its end; this is the way back).
ANSWER_GRACE_S = 2.0
#: a read that timed out this close to the caller's deadline ran out of the caller's time.
_DEADLINE_SLACK_S = 0.1
#: seconds an event stream may say nothing before its connection counts as dead (a
#: half-open connection, a proxy that holds it but passes nothing): three of the
#: keep-alive comments ``crank run`` sends after 15 s without events (``KEEPALIVE_S`` of
#: ``crank.runtime.http.sse``, which a client does not import; a test keeps them in step).
STREAM_SILENCE_S = 45.0


def segment(value: str, what: str = "task id") -> str:
    """``value`` as one segment of a URL path: escaped, so an id can never reach
    another route (``../dead-letters/...``) or cut the path (``?``, ``#``); an id that
    cannot be one is an :class:`InvalidTask` (:func:`check_id`)."""
    return quote(check_id(value, what), safe="")


@dataclass(frozen=True)
class Planned:
    """One API request before it is sent: ``what`` names it in errors, ``requested``
    is the capability whose ``Deprecation`` header is read, ``wait_s`` the caller's
    own bound on a wait for a result."""

    method: str
    path: str
    what: str
    requested: str | None = None
    wait_s: float | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    #: when the caller's ``timeout`` runs out (``time.monotonic()``): no try starts, and
    #: no read goes on, past it (but for ``grace_s``, the answer's way back).
    deadline: float | None = None
    grace_s: float = 0.0
    #: the task the request is about, when there is one (a timeout or a 404 names it).
    task_id: str | None = None

    def options_now(self) -> Mapping[str, Any]:
        """The options of a try made now: reading bounded by what is left of the deadline."""
        timeout = self.options.get("timeout")
        if not isinstance(timeout, httpx.Timeout):
            return self.options
        left = seconds_left(self.deadline)
        read = None if left is None else max(0.001, left) + self.grace_s
        if read is not None and (timeout.read is None or timeout.read > read):
            timeout = httpx.Timeout(
                timeout.connect, read=read, write=timeout.write, pool=timeout.pool
            )
        return {**self.options, "timeout": socket_timeout(timeout)}

    def failure(self, exc: Exception, base_url: str, attempts: int) -> ClientError:
        """The error to raise when sending failed with ``exc`` (the retries are over)."""
        if isinstance(exc, RetryLater):
            return error_of(exc.response, exc.body, what=self.what)
        left = seconds_left(self.deadline)
        if (
            isinstance(exc, httpx.TimeoutException)
            and self.wait_s is not None
            and (left is None or left <= _DEADLINE_SLACK_S)
        ):
            # the caller's time ran out (a read that timed out earlier is the server's)
            return TaskTimeout(self.task_id, self.wait_s, why=f"no answer to {self.what}")
        if isinstance(exc, httpx.TimeoutException):
            return ServerUnreachable(
                f"{base_url} did not answer {self.what} in time ({type(exc).__name__})",
                hint="check the server, or raise the client's timeout",
                subject=base_url,
            )
        return unreachable(base_url, self.what, exc, attempts)

    def document(self, response: httpx.Response) -> Any:
        """The JSON of a 2xx answer; an :class:`ApiError` when it is none (``base_url``
        names something other than a crank server, or a proxy answered)."""
        try:
            return response.json()
        except ValueError:
            raise not_crank(response, self.what, "is not JSON") from None

    def task(self, response: httpx.Response) -> TaskInfo:
        """The task document of a 2xx answer as a :class:`TaskInfo`."""
        body = self.document(response)
        if not isinstance(body, dict) or not isinstance(body.get("id"), str):
            raise not_crank(response, self.what, "is not a task")
        try:
            return TaskInfo.from_document(body)
        except (TypeError, ValueError):  # a field of the wrong kind ("attempts": "many")
            raise not_crank(response, self.what, "is not a task") from None

    def tasks(self, response: httpx.Response) -> TaskList:
        """A page of ``GET /v1/tasks`` as a :class:`TaskList`."""
        body = self.document(response)
        if not isinstance(body, dict) or not isinstance(body.get("tasks"), list):
            raise not_crank(response, self.what, "is not a list of tasks")
        try:
            return TaskList.from_document(body)
        except (TypeError, ValueError):
            raise not_crank(response, self.what, "is not a list of tasks") from None

    def count(self, response: httpx.Response) -> int:
        """The ``count`` of a bulk change's answer."""
        body = self.document(response)
        count = body.get("count") if isinstance(body, dict) else None
        if not isinstance(count, int) or isinstance(count, bool):
            raise not_crank(response, self.what, "has no count")
        return count

    def deprecation(self, response: httpx.Response) -> CapabilityDeprecated | None:
        """The warning a deprecated capability's answer carries (the client warns)."""
        return deprecation_of(response, self.requested) if self.requested is not None else None

    def answer(self, response: httpx.Response) -> httpx.Response:
        """A 2xx answer as it is; any other raises the error it carries."""
        if response.is_success:
            return response
        raise error_of(
            response,
            body_of(response),
            what=self.what,
            timeout=self.wait_s,
            task_id=self.task_id,
        )


def not_crank(response: httpx.Response, what: str, why: str) -> ApiError:
    """The error of a successful answer that is not what a crank server sends."""
    kind = response.headers.get("content-type", "no content type")
    return ApiError(
        response.status_code,
        "UNEXPECTED_ANSWER",
        f"the answer to {what} {why} ({kind}): {response.text.strip()[:120]!r}",
        hint="check that base_url is the address of crank run (GET /health answers it)",
    )


def busy(response: httpx.Response) -> None:
    """Raise :class:`RetryLater` for a 429, for the retries to wait and send again."""
    if response.status_code == 429:
        raise RetryLater(response, body_of(response))


def _json_headers(capability: str, idempotency_key: str | None) -> dict[str, str]:
    check_idempotency_key(idempotency_key, capability)
    return {
        "Content-Type": "application/json",
        "Idempotency-Key": new_idempotency_key() if idempotency_key is None else idempotency_key,
    }


def call_request(
    capability: str,
    payload: Mapping[str, Any],
    *,
    idempotency_key: str | None,
    timeout: float | None,
    client_timeout: httpx.Timeout,
) -> Planned:
    """``POST /v1/capabilities/{id}``: run a capability and wait for its output."""
    wait = (
        httpx.Timeout(client_timeout.connect, read=timeout)
        if timeout is not None
        else unbounded_read(client_timeout)
    )
    return Planned(
        "POST",
        f"/v1/capabilities/{segment(capability, 'capability id')}",
        what=f"calling {capability}",
        requested=capability,
        wait_s=timeout,
        options={
            "content": encode_json(capability, payload),
            "headers": _json_headers(capability, idempotency_key),
            "timeout": wait,
        },
        deadline=deadline_of(timeout),
    )


def submit_request(
    capability: str, payload: Mapping[str, Any], *, priority: int, idempotency_key: str | None
) -> Planned:
    """``POST /v1/tasks``: queue a task."""
    body = {"capability": capability, "input": payload, "priority": priority}
    return Planned(
        "POST",
        "/v1/tasks",
        what=f"submitting {capability}",
        requested=capability,
        options={
            "content": encode_json(capability, body),
            "headers": _json_headers(capability, idempotency_key),
        },
    )


def status_request(
    task_id: str,
    wait_s: float = 0.0,
    client_timeout: httpx.Timeout | None = None,
    *,
    timeout: float | None = None,
    deadline: float | None = None,
) -> Planned:
    """``GET /v1/tasks/{id}``; with ``wait_s`` the server answers once the task ended or
    after that long (``?wait=``), so reading goes on that long past the client's timeout.
    ``deadline`` (of the caller's ``timeout``) bounds the read: a server that does not
    answer by then is a :class:`TaskTimeout` of this task, not an unreachable server."""
    what = f"reading task {task_id}"
    path = f"/v1/tasks/{segment(task_id)}"
    if wait_s <= 0:
        return Planned("GET", path, what=what, task_id=task_id)
    options: dict[str, Any] = {"params": {"wait": f"{wait_s:.3f}"}}
    if client_timeout is not None and client_timeout.read is not None:
        options["timeout"] = httpx.Timeout(
            client_timeout.connect,
            read=client_timeout.read + wait_s,
            write=client_timeout.write,
            pool=client_timeout.pool,
        )
    planned = Planned("GET", path, what=what, options=options, task_id=task_id)
    if deadline is None:
        return planned
    return replace(planned, wait_s=timeout, deadline=deadline, grace_s=ANSWER_GRACE_S)


def cancel_request(task_id: str) -> Planned:
    """``DELETE /v1/tasks/{id}``."""
    return Planned(
        "DELETE",
        f"/v1/tasks/{segment(task_id)}",
        what=f"cancelling task {task_id}",
        task_id=task_id,
    )


def list_request(
    *,
    status: str | None = None,
    capability: str | None = None,
    caller: str | None = None,
    cursor: str | None = None,
    limit: int | None = None,
) -> Planned:
    """``GET /v1/tasks`` with the filters given (None values left out)."""
    filters = {
        "status": status,
        "capability": capability,
        "caller": caller,
        "cursor": cursor,
        "limit": limit,
    }
    params = {k: str(v) for k, v in filters.items() if v is not None}
    return Planned("GET", "/v1/tasks", what="listing tasks", options={"params": params})


def redrive_request(task_id: str) -> Planned:
    """``POST /v1/dead-letters/{id}/redrive``."""
    return Planned(
        "POST",
        f"/v1/dead-letters/{segment(task_id)}/redrive",
        what=f"redriving dead letter {task_id}",
        task_id=task_id,
    )


def redrive_all_request(capability: str) -> Planned:
    """``POST /v1/capabilities/{capability}/dead-letters/redrive``."""
    return Planned(
        "POST",
        f"/v1/capabilities/{segment(capability, 'capability id')}/dead-letters/redrive",
        what=f"redriving the dead letters of {capability}",
    )


def cancel_refusal(exc: ApiError, base_url: str) -> ClientError:
    """The error of a refused cancel: a server without the route cannot cancel at all."""
    if exc.status == 405 or (exc.status == 404 and exc.code != "TASK_NOT_FOUND"):
        return cancel_not_supported(base_url, exc.status)
    return exc


def cancelled(response: httpx.Response) -> TaskInfo | None:
    """The task as the cancel answer describes it (None: ask for its status)."""
    body = body_of(response)
    if isinstance(body, dict) and "id" in body and "status" in body:
        try:
            return TaskInfo.from_document(body)
        except (TypeError, ValueError):
            raise not_crank(response, "cancelling a task", "is not a task") from None
    return None


def events_request(
    task_id: str, after: int, client_timeout: httpx.Timeout, deadline: float | None = None
) -> Planned:
    """``GET /v1/tasks/{id}/events`` from after event ``after``. With the caller's
    ``deadline``, the server is asked to end the stream then (``?wait=``: an
    ``event: error`` with code ``TIMEOUT`` and no status), and a read stops a moment
    after it whatever the server does."""
    options: dict[str, Any] = {
        "headers": {"Accept": "text/event-stream", "Last-Event-ID": str(after)},
        # a live stream is never quiet that long (keep-alive comments): a dead one is
        "timeout": httpx.Timeout(
            client_timeout.connect,
            read=STREAM_SILENCE_S,
            write=client_timeout.write,
            pool=client_timeout.pool,
        ),
    }
    left = seconds_left(deadline)
    if left is not None:
        options["params"] = {"wait": f"{max(0.0, left):.3f}"}
    return Planned(
        "GET",
        f"/v1/tasks/{segment(task_id)}/events",
        what=f"reading the events of task {task_id}",
        options=options,
        deadline=deadline,
        grace_s=ANSWER_GRACE_S,
        task_id=task_id,
    )


def events_refused(response: httpx.Response, planned: Planned) -> Exception:
    """The error of an event stream that did not open (its body already read)."""
    if response.status_code == 429:
        return RetryLater(response, body_of(response))
    if response.is_success:  # a 2xx that is no event stream
        return not_crank(response, planned.what, "is not an event stream")
    return error_of(response, body_of(response), what=planned.what, task_id=planned.task_id)


def is_event_stream(response: httpx.Response) -> bool:
    """Whether an answer opened a task's events (a 2xx of ``text/event-stream``)."""
    kind = response.headers.get("content-type", "")
    return response.is_success and kind.partition(";")[0].strip() == "text/event-stream"


def past(deadline: float | None) -> bool:
    """Whether the caller's ``deadline`` has passed (never, without one)."""
    left = seconds_left(deadline)
    return left is not None and left <= 0


def reopen_pause(cursor: EventCursor, policy: RetryPolicy) -> float:
    """Seconds to wait before reopening a task's events that broke off (backing off)."""
    return backoff_s(policy.backoff_s, cursor.broken + 1, policy.max_wait_s)


def closed_early_pause(cursor: EventCursor, policy: RetryPolicy, base_url: str) -> float:
    """Seconds to wait before reopening a task's events whose stream ended before the
    task did; raises :class:`ServerUnreachable` once ``policy.attempts`` connections in
    a row brought no event (a server or proxy answering an empty stream would be asked
    again for ever)."""
    if cursor.broken + 1 >= policy.attempts:
        raise ServerUnreachable(
            f"the events of task {cursor.task_id} at {base_url} ended before the task, "
            f"without an event, {policy.attempts} times in a row",
            hint="crank run ends a stream with the task (event: end or error): check that "
            "base_url is crank run, and any proxy between",
            subject=base_url,
        )
    return reopen_pause(cursor, policy)


def resume_pause(
    exc: Exception,
    cursor: EventCursor,
    policy: RetryPolicy,
    deadline: float | None,
    base_url: str,
    *,
    timeout: float | None = None,
) -> float | None:
    """Seconds to wait before reopening a task's events after ``exc``, or None to
    reopen at once; raises when it gives up (past the deadline of the caller's
    ``timeout``: a :class:`TaskTimeout` naming it, whatever the server said)."""
    left = seconds_left(deadline)
    if isinstance(exc, TaskTimeout | httpx.ReadTimeout) and left is not None and left <= 0:
        raise events_timeout(cursor.task_id, timeout) from None
    if isinstance(exc, TaskTimeout):
        # the server's wait (the capability's timeout_s) ran out and the task goes on:
        # a new connection waits afresh
        cursor.ended = False
        return None
    giving_up = cursor.broken + 1 >= policy.attempts
    if isinstance(exc, httpx.ReadTimeout):
        # silent for several keep-alive intervals before our deadline: the connection is
        # dead, as if it had dropped
        if giving_up:
            raise ServerUnreachable(
                f"the events of task {cursor.task_id} at {base_url} went silent for "
                f"{STREAM_SILENCE_S:g} s, {policy.attempts} times in a row",
                hint="a live stream sends a keep-alive comment every 15 s: check the "
                "server, and any proxy between that holds connections without passing data",
                subject=base_url,
            ) from None
        return reopen_pause(cursor, policy)
    if isinstance(exc, RetryLater):
        if giving_up:
            raise error_of(exc.response, exc.body, what="reading events") from None
        return min(policy.max_wait_s, exc.retry_after_s or policy.backoff_s)
    if giving_up:
        what = f"reading the events of task {cursor.task_id}"
        raise unreachable(base_url, what, exc, policy.attempts) from None
    return reopen_pause(cursor, policy)


def events_timeout(task_id: str, timeout: float | None) -> TaskTimeout:
    """The error of a task whose events did not end within the caller's ``timeout``."""
    return TaskTimeout(task_id, timeout)


def before_reopening(
    cursor: EventCursor, pause: float, deadline: float | None, timeout: float | None
) -> float:
    """Count the broken connection and say how long to wait before reopening;
    raises :class:`TaskTimeout` once the caller's deadline has passed."""
    cursor.broken += 1
    left = seconds_left(deadline)
    if left is not None and left <= 0:
        raise events_timeout(cursor.task_id, timeout)
    return pause if left is None else min(pause, left)


__all__ = [
    "EVENT_FAILURES",
    "SEND_FAILURES",
    "STREAM_SILENCE_S",
    "Planned",
    "before_reopening",
    "busy",
    "call_request",
    "cancel_refusal",
    "cancel_request",
    "cancelled",
    "check_timeout",
    "closed_early_pause",
    "events_refused",
    "events_request",
    "events_timeout",
    "is_event_stream",
    "not_crank",
    "past",
    "reopen_pause",
    "resume_pause",
    "segment",
    "status_request",
    "submit_request",
]
