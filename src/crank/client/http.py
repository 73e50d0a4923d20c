"""The synchronous HTTP client of a ``crank run`` server: :class:`Client` and :class:`Task`.

Every request goes through :meth:`Client._send`, which retries what is safe to
retry (:class:`~crank.client.wire.RetryPolicy`), turns error answers into
exceptions and a ``Deprecation`` header into a :class:`CapabilityDeprecated`
warning pointed at the caller's line.
"""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING, Any

import httpx
from httpx_sse import EventSource
from tenacity import Retrying

from crank.client.errors import ApiError, ClientClosed, TaskTimeout
from crank.client.exchange import (
    EVENT_FAILURES,
    SEND_FAILURES,
    Planned,
    before_reopening,
    busy,
    call_request,
    cancel_refusal,
    cancel_request,
    cancelled,
    check_timeout,
    closed_early_pause,
    events_refused,
    events_request,
    events_timeout,
    is_event_stream,
    list_request,
    past,
    redrive_all_request,
    redrive_request,
    resume_pause,
    status_request,
    submit_request,
)
from crank.client.tasks import (
    TaskEvent,
    TaskInfo,
    TaskList,
    check_after,
    check_id,
    check_task_request,
)
from crank.client.waiting import LongPolls, deadline_of, seconds_left
from crank.client.wire import (
    DEFAULT_URL,
    EventCursor,
    RetryLater,
    RetryPolicy,
    client_options,
    request_headers,
    socket_timeout,
    warn_caller,
)

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping
    from types import TracebackType

    from crank.client.errors import ClientError


class Client:
    """Calls the capabilities a ``crank run`` server serves, over HTTP.

    ``token`` is sent as ``Authorization: Bearer``; ``caller`` as ``X-Crank-Caller``
    (it names you in the server's deprecation counters). ``timeout`` bounds each
    request that is not a wait for a result (connect, read, write; seconds).
    """

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        token: str | None = None,
        caller: str | None = None,
        timeout: float | None = 30.0,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = client_options(base_url, timeout)
        self.retry = retry or RetryPolicy()
        self._http = httpx.Client(
            base_url=self.base_url,
            headers=request_headers(token, caller),
            timeout=socket_timeout(httpx.Timeout(timeout)),
            transport=transport,
        )

    # -- the API ---------------------------------------------------------------------

    def call(
        self,
        capability: str,
        input: Mapping[str, Any],
        *,
        idempotency_key: str | None = None,
        timeout: float | None = None,
    ) -> Any:
        """Run ``capability`` on ``input`` and return its output.

        The server waits up to the capability's ``timeout_s``; ``timeout`` (seconds)
        bounds the wait on this side too. Raises :class:`TaskFailed` (``code`` is the
        handler's error code), :class:`TaskTimeout` (with the task id when the server
        gave one up), :class:`ApiError` for a refused request.
        """
        check_task_request(capability, input)
        planned = call_request(
            capability,
            input,
            idempotency_key=idempotency_key,
            timeout=check_timeout(timeout, zero=False),
            client_timeout=self._http.timeout,
        )
        return planned.document(self._send(planned))

    def submit(
        self,
        capability: str,
        input: Mapping[str, Any],
        *,
        priority: int = 0,
        idempotency_key: str | None = None,
    ) -> Task:
        """Queue a task (``POST /v1/tasks``); the :class:`Task` waits for it."""
        check_task_request(capability, input)
        planned = submit_request(
            capability, input, priority=priority, idempotency_key=idempotency_key
        )
        info = planned.task(self._send(planned))
        return Task(self, info.id, info)

    def task(self, task_id: str) -> Task:
        """A handle on a task submitted before (by this client or another)."""
        self._open()  # a closed client hands out nothing that could only fail later
        return Task(self, check_id(task_id))

    def list_tasks(
        self,
        *,
        status: str | None = None,
        capability: str | None = None,
        caller: str | None = None,
        cursor: str | None = None,
        limit: int | None = None,
    ) -> TaskList:
        """One page of tasks, newest first (``GET /v1/tasks``); follow ``next_cursor``."""
        planned = list_request(
            status=status, capability=capability, caller=caller, cursor=cursor, limit=limit
        )
        return planned.tasks(self._send(planned))

    def redrive(self, task_id: str) -> TaskInfo:
        """Put a dead letter back on its queue (``POST /v1/dead-letters/{id}/redrive``):
        the task, now ``pending``; :class:`ApiError` 409 ``NOT_A_DEAD_LETTER`` when it is
        not dead, :class:`TaskNotFound` when there is none."""
        planned = redrive_request(task_id)
        return planned.task(self._send(planned))

    def redrive_dead_letters(self, capability: str) -> int:
        """Put every dead letter of ``capability`` back on its queue; returns how many."""
        planned = redrive_all_request(capability)
        return planned.count(self._send(planned))

    def close(self) -> None:
        """Close the connection pool; every call after raises :class:`ClientClosed`."""
        self._http.close()

    def _open(self) -> httpx.Client:
        if self._http.is_closed:
            raise ClientClosed(f"Client of {self.base_url}", hint="make a new Client(...)")
        return self._http

    def __enter__(self) -> Client:
        self._open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- sending ---------------------------------------------------------------------

    def _send(self, planned: Planned) -> httpx.Response:
        """One request with retries; a 2xx answer, else the error raised."""
        failure: ClientError | None = None
        try:
            for attempt in Retrying(**self.retry.tenacity_options(planned.deadline)):
                with attempt:
                    response = self._open().request(
                        planned.method, planned.path, **planned.options_now()
                    )
                    busy(response)
        except SEND_FAILURES as exc:
            failure = planned.failure(exc, self.base_url, self.retry.attempts)
            # a 429 still says the id is deprecated, when it does: warned as any answer
            answered = exc.response if isinstance(exc, RetryLater) else None
        else:
            answered = response
        warning = None if answered is None else planned.deprecation(answered)
        if warning is not None:
            warn_caller(warning)
        if failure is not None:
            raise failure
        return planned.answer(response)

    @contextlib.contextmanager
    def _event_source(
        self, task_id: str, after: int, deadline: float | None
    ) -> Iterator[EventSource]:
        """``GET /v1/tasks/{id}/events`` from after ``after``, open and checked."""
        planned = events_request(task_id, after, self._http.timeout, deadline)
        request = self._open().build_request(planned.method, planned.path, **planned.options_now())
        response = self._http.send(request, stream=True)
        try:
            if not is_event_stream(response):
                response.read()
                raise events_refused(response, planned)
            yield EventSource(response)
        finally:
            response.close()


class Task:
    """A queued task on a ``crank run`` server: its status, result and events."""

    def __init__(self, client: Client, task_id: str, info: TaskInfo | None = None) -> None:
        self.client = client
        self.id = task_id
        #: what the server said about the task when this handle was made (None: not asked).
        self.info = info

    def __repr__(self) -> str:
        return f"<Task {self.id} on {self.client.base_url}>"

    def status(self) -> TaskInfo:
        """The task now (``GET /v1/tasks/{id}``)."""
        planned = status_request(self.id)
        self.info = planned.task(self.client._send(planned))
        return self.info

    def result(self, timeout: float | None = None) -> Any:
        """Wait until the task is done and return its result.

        Raises :class:`TaskFailed` when it failed, :class:`TaskTimeout` when it is not
        done within ``timeout`` seconds (None: wait as long as it takes).
        """
        deadline = deadline_of(check_timeout(timeout, zero=True))
        polls = LongPolls()
        while True:
            info = self._look(polls.wait_s(seconds_left(deadline)), timeout, deadline)
            if info.done:
                return info.outcome()
            left = seconds_left(deadline)
            if left is not None and left <= 0:
                raise TaskTimeout(self.id, timeout)
            pause = polls.pause_s()
            if pause > 0:
                time.sleep(pause if left is None else min(pause, left))

    def _look(self, wait_s: float, timeout: float | None, deadline: float | None) -> TaskInfo:
        """The task once it ended or after ``wait_s`` (the server waits, woken by its end);
        no read goes on past the caller's ``deadline`` (of ``timeout``)."""
        planned = status_request(
            self.id, wait_s, self.client._http.timeout, timeout=timeout, deadline=deadline
        )
        self.info = planned.task(self.client._send(planned))
        return self.info

    def events(self, *, after: int = 0, timeout: float | None = None) -> Iterator[TaskEvent]:
        """The events of a streaming task as they are emitted, then the end.

        A dropped connection is resumed with ``Last-Event-ID`` (no event is lost or
        repeated); ends when the task ends; a failed task raises :class:`TaskFailed`
        after the events it sent. ``timeout`` bounds the whole wait (None: the task's).
        """
        cursor = EventCursor(self.id, last_id=check_after(after))
        deadline = deadline_of(check_timeout(timeout, zero=True))
        policy = self.client.retry
        while True:
            try:
                with self.client._event_source(self.id, cursor.last_id, deadline) as source:
                    for frame in source.iter_sse():
                        event = cursor.take(frame.event, frame.id, frame.data)
                        if event is not None:
                            yield event
                        if not cursor.ended and past(deadline):
                            raise events_timeout(self.id, timeout)
                if cursor.ended:
                    return
                pause: float | None = closed_early_pause(cursor, policy, self.client.base_url)
            except EVENT_FAILURES as exc:
                pause = resume_pause(
                    exc, cursor, policy, deadline, self.client.base_url, timeout=timeout
                )
            if pause is None:
                continue
            # closed before its end (or refused for a while): resume after the last event
            time.sleep(before_reopening(cursor, pause, deadline, timeout))

    def cancel(self) -> TaskInfo:
        """Ask the server to cancel the task (``DELETE /v1/tasks/{id}``).

        Raises :class:`CancelNotSupported` when the server has no such route.
        """
        try:
            response = self.client._send(cancel_request(self.id))
        except ApiError as exc:
            raise cancel_refusal(exc, self.client.base_url) from None
        info = cancelled(response)
        if info is not None:
            self.info = info
            return info
        return self.status()


__all__ = ["Client", "Task"]
