"""The asyncio HTTP client of a ``crank run`` server: :class:`AsyncClient` and :class:`AsyncTask`.

The same API as :mod:`.http` with ``await`` (and ``async for`` over events); the
requests, answers, retries and events are decoded by the same functions (:mod:`.wire`).
"""

from __future__ import annotations

import asyncio
import contextlib
import warnings
from typing import TYPE_CHECKING, Any

import httpx
from httpx_sse import EventSource
from tenacity import AsyncRetrying

from crank.client.errors import ApiError, ServerUnreachable, TaskTimeout
from crank.client.tasks import TaskEvent, TaskInfo, check_task_request, encode_json
from crank.client.waiting import ResultPolls, deadline_of, seconds_left
from crank.client.wire import (
    DEFAULT_URL,
    RETRIED_TRANSPORT_ERRORS,
    EventCursor,
    RetryLater,
    RetryPolicy,
    backoff_s,
    body_of,
    cancel_not_supported,
    deprecation_of,
    error_of,
    new_idempotency_key,
    request_headers,
    unbounded_read,
    unreachable,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping
    from types import TracebackType

#: ``warnings.warn`` in :meth:`AsyncClient._send` (1), the API coroutine (2), its caller (3).
_USER_FRAME = 3


class AsyncClient:
    """:class:`crank.client.Client` for asyncio: the same arguments, awaitable methods."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        token: str | None = None,
        caller: str | None = None,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.retry = retry or RetryPolicy()
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            headers=request_headers(token, caller),
            timeout=timeout,
            transport=transport,
        )

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
        response = await self._send(
            "POST",
            f"/v1/capabilities/{capability}",
            what=f"calling {capability}",
            content=encode_json(capability, input),
            headers={
                "Content-Type": "application/json",
                "Idempotency-Key": idempotency_key or new_idempotency_key(),
            },
            requested=capability,
            timeout=httpx.Timeout(self._http.timeout.connect, read=timeout)
            if timeout is not None
            else unbounded_read(self._http.timeout),
            wait_s=timeout,
        )
        return response.json()

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
        body = {"capability": capability, "input": input, "priority": priority}
        response = await self._send(
            "POST",
            "/v1/tasks",
            what=f"submitting {capability}",
            content=encode_json(capability, body),
            headers={
                "Content-Type": "application/json",
                "Idempotency-Key": idempotency_key or new_idempotency_key(),
            },
            requested=capability,
        )
        info = TaskInfo.from_document(response.json())
        return AsyncTask(self, info.id, info)

    def task(self, task_id: str) -> AsyncTask:
        """A handle on a task submitted before (by this client or another)."""
        return AsyncTask(self, task_id)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _send(
        self,
        method: str,
        path: str,
        *,
        what: str,
        requested: str | None = None,
        wait_s: float | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """One request with retries; a 2xx answer, else the error raised."""
        try:
            async for attempt in AsyncRetrying(**self.retry.tenacity_options()):
                with attempt:
                    response = await self._http.request(method, path, **kwargs)
                    if response.status_code == 429:
                        raise RetryLater(response, body_of(response))
        except RetryLater as last:
            raise error_of(last.response, last.body, what=what) from None
        except httpx.TimeoutException as exc:
            if wait_s is not None:
                raise TaskTimeout(None, wait_s, why=f"no answer to {what}") from None
            raise ServerUnreachable(
                f"{self.base_url} did not answer {what} in time ({type(exc).__name__})",
                hint="check the server, or raise the client's timeout",
                subject=self.base_url,
            ) from None
        except RETRIED_TRANSPORT_ERRORS as exc:
            raise unreachable(self.base_url, what, exc, self.retry.attempts) from None
        if requested is not None:
            warning = deprecation_of(response, requested)
            if warning is not None:
                warnings.warn(warning, stacklevel=_USER_FRAME)
        if response.is_success:
            return response
        raise error_of(response, body_of(response), what=what)

    @contextlib.asynccontextmanager
    async def _event_source(self, task_id: str, after: int) -> AsyncIterator[EventSource]:
        path = f"/v1/tasks/{task_id}/events"
        what = f"reading the events of task {task_id}"
        request = self._http.build_request(
            "GET",
            path,
            headers={"Accept": "text/event-stream", "Last-Event-ID": str(after)},
            timeout=unbounded_read(self._http.timeout),
        )
        response = await self._http.send(request, stream=True)
        try:
            if not response.is_success:
                await response.aread()
                if response.status_code == 429:
                    raise RetryLater(response, body_of(response))
                raise error_of(response, body_of(response), what=what)
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
        response = await self.client._send(
            "GET", f"/v1/tasks/{self.id}", what=f"reading task {self.id}"
        )
        self.info = TaskInfo.from_document(response.json())
        return self.info

    async def result(self, timeout: float | None = None) -> Any:
        """Wait until the task is done and return its result (see ``Task.result``)."""
        deadline = deadline_of(timeout)
        polls = ResultPolls()
        while True:
            info = await self.status()
            if info.done:
                return info.outcome()
            left = seconds_left(deadline)
            if left is not None and left <= 0:
                raise TaskTimeout(self.id, timeout)
            pause = polls.next_s()
            await asyncio.sleep(pause if left is None else min(pause, left))

    async def events(
        self, *, after: int = 0, timeout: float | None = None
    ) -> AsyncIterator[TaskEvent]:
        """The events of a streaming task, resumed after a dropped connection (see
        ``Task.events``)."""
        cursor = EventCursor(self.id, last_id=after)
        deadline = deadline_of(timeout)
        policy = self.client.retry
        while True:
            try:
                async with self.client._event_source(self.id, cursor.last_id) as source:
                    async for frame in source.aiter_sse():
                        event = cursor.take(frame.event, frame.id, frame.data)
                        if event is not None:
                            yield event
                if cursor.ended:
                    return
            except RetryLater as busy:
                if cursor.broken + 1 >= policy.attempts:
                    raise error_of(busy.response, busy.body, what="reading events") from None
                pause = min(policy.max_wait_s, busy.retry_after_s or policy.backoff_s)
            except TaskTimeout:
                left = seconds_left(deadline)
                if left is not None and left <= 0:
                    raise
                cursor.ended = False
                continue
            except RETRIED_TRANSPORT_ERRORS as exc:
                if cursor.broken + 1 >= policy.attempts:
                    what = f"reading the events of task {self.id}"
                    raise unreachable(self.client.base_url, what, exc, policy.attempts) from None
                pause = backoff_s(policy.backoff_s, cursor.broken + 1, policy.max_wait_s)
            cursor.broken += 1
            left = seconds_left(deadline)
            if left is not None and left <= 0:
                raise TaskTimeout(self.id, timeout, why="its events did not end in time")
            await asyncio.sleep(pause if left is None else min(pause, left))

    async def cancel(self) -> TaskInfo:
        """Ask the server to cancel the task; :class:`CancelNotSupported` when it cannot."""
        try:
            response = await self.client._send(
                "DELETE", f"/v1/tasks/{self.id}", what=f"cancelling task {self.id}"
            )
        except ApiError as exc:
            if exc.status == 405 or (exc.status == 404 and exc.code != "TASK_NOT_FOUND"):
                raise cancel_not_supported(self.client.base_url, exc.status) from None
            raise
        body = body_of(response)
        if isinstance(body, dict) and "id" in body and "status" in body:
            self.info = TaskInfo.from_document(body)
            return self.info
        return await self.status()


__all__ = ["AsyncClient", "AsyncTask"]
