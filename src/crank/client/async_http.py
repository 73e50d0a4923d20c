"""The asyncio HTTP client of a ``crank run`` server: :class:`AsyncClient` and :class:`AsyncTask`.

The same API as :mod:`.http` with ``await`` (and ``async for`` over events); the
requests, answers, retries and events are built and decoded by the same functions
(:mod:`.exchange`, :mod:`.wire`).
"""

# The async twin of http.py: the same signatures and loop shapes with await, which
# the duplicate-code check would report; everything the twins can share is shared.
# pylint: disable=duplicate-code

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

import httpx
from httpx_sse import EventSource
from tenacity import AsyncRetrying

from crank.client.errors import ApiError, ClientClosed, ClientError, TaskTimeout
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
    from collections.abc import AsyncIterator, Mapping
    from types import TracebackType


class AsyncClient:
    """:class:`crank.client.Client` for asyncio: the same arguments, awaitable methods."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        token: str | None = None,
        caller: str | None = None,
        timeout: float | None = 30.0,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = client_options(base_url, timeout)
        self.retry = retry or RetryPolicy()
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            headers=request_headers(token, caller),
            timeout=socket_timeout(httpx.Timeout(timeout)),
            transport=transport,
        )
        #: the event loop of the first request: the pool's connections belong to it.
        self._loop: asyncio.AbstractEventLoop | None = None

    async def call(
        self,
        capability: str,
        input: Mapping[str, Any],
        *,
        idempotency_key: str | None = None,
        timeout: float | None = None,
    ) -> Any:
        """Run ``capability`` on ``input`` and return its output (see ``Client.call``)."""
        check_task_request(capability, input)
        planned = call_request(
            capability,
            input,
            idempotency_key=idempotency_key,
            timeout=check_timeout(timeout, zero=False),
            client_timeout=self._http.timeout,
        )
        return planned.document(await self._send(planned))

    async def submit(
        self,
        capability: str,
        input: Mapping[str, Any],
        *,
        priority: int = 0,
        idempotency_key: str | None = None,
    ) -> AsyncTask:
        """Queue a task (``POST /v1/tasks``); the :class:`AsyncTask` waits for it."""
        check_task_request(capability, input)
        planned = submit_request(
            capability, input, priority=priority, idempotency_key=idempotency_key
        )
        info = planned.task(await self._send(planned))
        return AsyncTask(self, info.id, info)

    def task(self, task_id: str) -> AsyncTask:
        """A handle on a task submitted before (by this client or another)."""
        self._open()  # a closed client hands out nothing that could only fail later
        return AsyncTask(self, check_id(task_id))

    async def list_tasks(
        self,
        *,
        status: str | None = None,
        capability: str | None = None,
        caller: str | None = None,
        cursor: str | None = None,
        limit: int | None = None,
    ) -> TaskList:
        """One page of tasks, newest first (see ``Client.list_tasks``)."""
        planned = list_request(
            status=status, capability=capability, caller=caller, cursor=cursor, limit=limit
        )
        return planned.tasks(await self._send(planned))

    async def redrive(self, task_id: str) -> TaskInfo:
        """Put a dead letter back on its queue (see ``Client.redrive``)."""
        planned = redrive_request(task_id)
        return planned.task(await self._send(planned))

    async def redrive_dead_letters(self, capability: str) -> int:
        """Put every dead letter of ``capability`` back on its queue; returns how many."""
        planned = redrive_all_request(capability)
        return planned.count(await self._send(planned))

    async def aclose(self) -> None:
        """Close the connection pool; every call after raises :class:`ClientClosed`."""
        try:
            await self._http.aclose()
        except RuntimeError:
            # its connections belong to another loop, maybe closed ("Event loop is
            # closed"): they cannot be closed from this one, and the pool is closed anyway
            if self._loop is None or self._loop is asyncio.get_running_loop():
                raise

    def _open(self) -> httpx.AsyncClient:
        if self._http.is_closed:
            raise ClientClosed(
                f"AsyncClient of {self.base_url}", hint="make a new AsyncClient(...)"
            )
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # task() outside a coroutine: nothing is sent
            return self._http
        if self._loop is None:
            self._loop = loop
        elif loop is not self._loop:
            # httpx would raise "Event loop is closed", or mix two loops' connections
            raise ClientError(
                f"AsyncClient of {self.base_url} is used in another event loop than its "
                "first request's: its connections belong to that one",
                hint="make one AsyncClient per event loop, e.g. `async with AsyncClient(...)` "
                "in the coroutine asyncio.run runs",
                subject=self.base_url,
            )
        return self._http

    async def __aenter__(self) -> AsyncClient:
        self._open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _send(self, planned: Planned) -> httpx.Response:
        """One request with retries; a 2xx answer, else the error raised."""
        failure: ClientError | None = None
        try:
            async for attempt in AsyncRetrying(**self.retry.tenacity_options(planned.deadline)):
                with attempt:
                    response = await self._open().request(
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

    @contextlib.asynccontextmanager
    async def _event_source(
        self, task_id: str, after: int, deadline: float | None
    ) -> AsyncIterator[EventSource]:
        planned = events_request(task_id, after, self._http.timeout, deadline)
        request = self._open().build_request(planned.method, planned.path, **planned.options_now())
        response = await self._http.send(request, stream=True)
        try:
            if not is_event_stream(response):
                await response.aread()
                raise events_refused(response, planned)
            yield EventSource(response)
        finally:
            await response.aclose()


class AsyncTask:
    """A queued task on a ``crank run`` server, for asyncio (see :class:`~crank.client.Task`)."""

    def __init__(self, client: AsyncClient, task_id: str, info: TaskInfo | None = None) -> None:
        self.client = client
        self.id = task_id
        self.info = info

    def __repr__(self) -> str:
        return f"<AsyncTask {self.id} on {self.client.base_url}>"

    async def status(self) -> TaskInfo:
        planned = status_request(self.id)
        self.info = planned.task(await self.client._send(planned))
        return self.info

    async def result(self, timeout: float | None = None) -> Any:
        """Wait until the task is done and return its result (see ``Task.result``)."""
        deadline = deadline_of(check_timeout(timeout, zero=True))
        polls = LongPolls()
        while True:
            info = await self._look(polls.wait_s(seconds_left(deadline)), timeout, deadline)
            if info.done:
                return info.outcome()
            left = seconds_left(deadline)
            if left is not None and left <= 0:
                raise TaskTimeout(self.id, timeout)
            pause = polls.pause_s()
            if pause > 0:
                await asyncio.sleep(pause if left is None else min(pause, left))

    async def _look(self, wait_s: float, timeout: float | None, deadline: float | None) -> TaskInfo:
        """The task once it ended or after ``wait_s`` (see ``Task._look``)."""
        planned = status_request(
            self.id, wait_s, self.client._http.timeout, timeout=timeout, deadline=deadline
        )
        self.info = planned.task(await self.client._send(planned))
        return self.info

    async def events(
        self, *, after: int = 0, timeout: float | None = None
    ) -> AsyncIterator[TaskEvent]:
        """The events of a streaming task, resumed after a dropped connection (see
        ``Task.events``)."""
        cursor = EventCursor(self.id, last_id=check_after(after))
        deadline = deadline_of(check_timeout(timeout, zero=True))
        policy = self.client.retry
        while True:
            try:
                async with self.client._event_source(self.id, cursor.last_id, deadline) as source:
                    async for frame in source.aiter_sse():
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
            await asyncio.sleep(before_reopening(cursor, pause, deadline, timeout))

    async def cancel(self) -> TaskInfo:
        """Ask the server to cancel the task; :class:`CancelNotSupported` when it cannot."""
        try:
            response = await self.client._send(cancel_request(self.id))
        except ApiError as exc:
            raise cancel_refusal(exc, self.client.base_url) from None
        info = cancelled(response)
        if info is not None:
            self.info = info
            return info
        return await self.status()


__all__ = ["AsyncClient", "AsyncTask"]
