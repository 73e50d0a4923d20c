"""Producers inside a deployment: queue tasks straight into the broker the workers claim from.

``connect("redis://host:6379/0")`` or ``connect("sqlite:///crank-queue.db")`` opens
the broker (the URLs and options of ``crank run --broker``) and returns a
:class:`BrokerClient`; ``connect_async`` the same for asyncio. Nothing here goes
through the HTTP server: no routing of deprecated ids, no validation before the
task is queued (the worker validates it and fails the task with
``INVALID_INPUT``), no overload bound. Use it where the producer is trusted and
speed matters; use :class:`~crank.client.Client` everywhere else.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from crank.client.errors import (
    ApiError,
    BrokerUnavailable,
    ClientClosed,
    InvalidTask,
    TaskNotFound,
    TaskTimeout,
)
from crank.client.tasks import (
    TaskInfo,
    TaskRequest,
    check_caller,
    check_id,
    check_idempotency_key,
    check_task_request,
    check_timeout,
    encode_json,
    positive_seconds,
)
from crank.client.waiting import deadline_of, seconds_left
from crank.errors import BrokerError
from crank.runtime.brokers import open_broker
from crank.runtime.brokers.common import url_usage_error, url_without_password
from crank.runtime.brokers.contract import (
    MAX_PRIORITY,
    SAFETY_POLL_S,
    IdempotencyKeyReused,
    TaskSpec,
    scoped_idempotency_key,
    valid_priority,
)

if TYPE_CHECKING:
    from types import TracebackType

    from crank.runtime.brokers.contract import Broker, Cancellation, TaskRecord

#: the most attempts a task may have: what a manifest's ``max_attempts`` allows (its
#: schema's maximum), so a task queued here runs no more often than one the server queues.
MAX_ATTEMPTS = 100

#: What ``submit_many`` takes: a :class:`TaskRequest`, or ``(capability, input)``.
TaskLike = TaskRequest | tuple[str, Mapping[str, Any]]


@contextlib.contextmanager
def _broker_errors() -> Iterator[None]:
    """A :class:`BrokerError` of the broker raised as :class:`BrokerUnavailable`: what
    a client raises is a :class:`ClientError`."""
    try:
        yield
    except BrokerUnavailable:
        raise
    except BrokerError as exc:
        raise BrokerUnavailable(exc.message, hint=exc.hint, subject=exc.subject) from exc


def _check_options(request: TaskRequest) -> None:
    """Refuse what the HTTP API would refuse (and what no broker checks): a priority out
    of range sorts a task where no client expects it; ``max_attempts=0`` makes a task
    that can never run; a timeout of 0 or less one that is over before it starts."""
    capability, priority = request.capability, request.priority
    if not valid_priority(priority):
        raise InvalidTask(
            f"the priority of {capability} must be an integer from -{MAX_PRIORITY} to "
            f"{MAX_PRIORITY}, not {priority!r:.40}",
            hint="higher runs first; 0 is the default",
            subject=capability,
        )
    attempts = request.max_attempts
    if (
        not isinstance(attempts, int)
        or isinstance(attempts, bool)
        or not 1 <= attempts <= MAX_ATTEMPTS
    ):
        raise InvalidTask(
            f"max_attempts of {capability} must be a whole number from 1 to {MAX_ATTEMPTS}, "
            f"not {attempts!r:.40}",
            hint="1 runs it once, without retries; 3 is the default",
            subject=capability,
        )
    timeout = request.timeout_s
    if timeout is not None and not positive_seconds(timeout):
        raise InvalidTask(
            f"timeout_s of {capability} must be a number of seconds above 0, or None, "
            f"not {timeout!r:.40}",
            hint="None gives the task its capability's timeout_s",
            subject=capability,
        )
    check_idempotency_key(request.idempotency_key, capability)
    meta = request.meta
    try:
        json.dumps(dict(meta), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidTask(
            f"the meta of a {capability} task must be a mapping that JSON can hold: {exc}",
            hint="use only strings as keys, and dicts, lists, strings, finite numbers, "
            "booleans and None as values",
            subject=capability,
        ) from None


def _spec(request: TaskLike, caller: str | None) -> TaskSpec:
    if not isinstance(request, TaskRequest):
        if not (isinstance(request, tuple) and len(request) == 2):
            raise InvalidTask(
                f"submit_many takes TaskRequest values or (capability, input) pairs, "
                f"not {request!r:.80}",
                hint="pass TaskRequest('demo.echo', {'text': 'hi'}) or ('demo.echo', {...})",
            )
        request = TaskRequest(request[0], request[1])
    check_task_request(request.capability, request.input)
    _check_options(request)
    # the broker writes JSON too, but would accept NaN and name no capability in its error
    encode_json(request.capability, request.input)
    meta: dict[str, Any] = {"requested": request.capability}
    if caller:
        meta["caller"] = caller
    meta.update(request.meta)
    return TaskSpec(
        capability=request.capability,
        payload=request.input,
        priority=request.priority,
        max_attempts=request.max_attempts,
        # scoped like the HTTP gateway's: the same caller's key means the same request
        idempotency_key=(
            None
            if request.idempotency_key is None
            else scoped_idempotency_key(caller, request.idempotency_key)
        ),
        timeout_s=request.timeout_s,
        meta=meta,
    )


def _accepted(submitted: list[TaskRecord | IdempotencyKeyReused]) -> list[TaskRecord]:
    """The records, or the 409 the HTTP API answers for a key bound to another request
    (the tasks before it in the batch are queued)."""
    records = []
    for item in submitted:
        if isinstance(item, IdempotencyKeyReused):
            raise ApiError(409, "IDEMPOTENCY_KEY_REUSED", item.message, hint=item.hint)
        records.append(item)
    return records


def _info(task_id: str, record: TaskRecord | None) -> TaskInfo:
    if record is None:
        raise TaskNotFound(task_id)
    return TaskInfo.from_record(record)


def _cancelled(task_id: str, cancellation: Cancellation | None) -> TaskInfo:
    """The task after a cancel, or the errors the HTTP API answers (404, 409)."""
    if cancellation is None:
        raise TaskNotFound(task_id)
    if cancellation.outcome == "finished":
        status = cancellation.task.status
        raise ApiError(
            409,
            "TASK_FINISHED",
            f"task {task_id} already ended: {status}",
            hint="nothing to cancel",
            details={"id": task_id, "task_status": status},
        )
    return TaskInfo.from_record(cancellation.task)


def _outcome(task_id: str, info: TaskInfo | None, timeout: float | None) -> Any:
    """The result of the task as the wait left it (``info``: None when it is gone), or
    the error it ended with."""
    if info is None:
        raise TaskNotFound(task_id)
    if not info.done:
        raise TaskTimeout(task_id, timeout)
    return info.outcome()


def _wait_watched(
    broker: Broker, submitted: TaskRecord, deadline: float | None
) -> TaskRecord | None:
    """Wait for a task submitted with ``watch=True``: its notice, usually with the outcome
    in it (no broker round trip at all), else one read after the notice or a quiet
    ``SAFETY_POLL_S``; none when the submit itself found the task ended (a repeated
    idempotency key). Stops watching it (``forget``) whatever happens."""
    notices = broker.result_notices()
    if notices is None:  # a backend without notices: its own wait reads the task
        return broker.wait_for_result(submitted.id, seconds_left(deadline))
    try:
        if submitted.done:  # no notice will come: it was sent before this submit
            return submitted
        while True:
            left = seconds_left(deadline)
            if left is None or left > 0:
                notice = notices.wait(
                    submitted.id, SAFETY_POLL_S if left is None else min(left, SAFETY_POLL_S)
                )
                finished = None if notice is None else notice.finish(submitted)
                if finished is not None:
                    return finished
            record = broker.get(submitted.id)
            left = seconds_left(deadline)
            if record is None or record.done or (left is not None and left <= 0):
                return record
    finally:
        notices.forget(submitted.id)


async def _wait_watched_async(
    broker: Broker, submitted: TaskRecord, deadline: float | None
) -> TaskRecord | None:
    """:func:`_wait_watched` for asyncio: the wait blocks no thread."""
    notices = await asyncio.to_thread(broker.result_notices)
    if notices is None:
        return await broker.wait_for_result_async(submitted.id, seconds_left(deadline))
    try:
        if submitted.done:
            return submitted
        while True:
            left = seconds_left(deadline)
            if left is None or left > 0:
                notice = await notices.wait_async(
                    submitted.id, SAFETY_POLL_S if left is None else min(left, SAFETY_POLL_S)
                )
                finished = None if notice is None else notice.finish(submitted)
                if finished is not None:
                    return finished
            record = await asyncio.to_thread(broker.get, submitted.id)
            left = seconds_left(deadline)
            if record is None or record.done or (left is not None and left <= 0):
                return record
    finally:
        notices.forget(submitted.id)


class BrokerClient:
    """Submits tasks to a broker and waits for their results (see the module docstring)."""

    def __init__(self, broker: Broker, *, caller: str | None = None) -> None:
        check_caller(caller)
        self.broker = broker
        #: kept with each task as ``meta.caller`` (logs and the console show it).
        self.caller = caller
        self._closed = False

    @property
    def url(self) -> str:
        return self.broker.url

    def _open_broker(self, kind: str = "BrokerClient") -> Broker:
        """The broker, or :class:`ClientClosed` once closed: a closed SQLite broker
        raised a misleading error, a closed Redis one connected again unseen."""
        if self._closed:
            raise ClientClosed(
                f"{kind} of {url_without_password(self.url)}",
                hint="call connect(url) again for a new one",
            )
        return self.broker

    def submit(
        self,
        capability: str,
        input: Mapping[str, Any],
        *,
        priority: int = 0,
        idempotency_key: str | None = None,
        max_attempts: int = 3,
        timeout_s: float | None = None,
        watch: bool = True,
    ) -> BrokerTask:
        """Queue one task (one broker round trip); the :class:`BrokerTask` waits for it.

        ``watch`` (the default) has the broker tell this process when the task ends, in
        the same round trip, so ``result()`` wakes at once; pass False for a task you
        will not wait for (nobody is told, nothing is kept here).
        """
        request = TaskRequest(
            capability,
            input,
            priority=priority,
            idempotency_key=idempotency_key,
            max_attempts=max_attempts,
            timeout_s=timeout_s,
        )
        return self.submit_many([request], watch=watch)[0]

    def submit_many(self, requests: Iterable[TaskLike], *, watch: bool = True) -> list[BrokerTask]:
        """Queue many tasks in one broker round trip (one SQLite transaction), in order
        (``watch`` as for :meth:`submit`)."""
        broker = self._open_broker()
        specs = [_spec(request, self.caller) for request in requests]
        if not specs:
            return []
        with _broker_errors():
            submitted = broker.submit_many(specs, watch=watch)
        records = _accepted(submitted)
        return [
            BrokerTask(self, r.id, TaskInfo.from_record(r), r if watch else None) for r in records
        ]

    def task(self, task_id: str) -> BrokerTask:
        """A handle on a task submitted before (by any producer or server)."""
        self._open_broker()
        return BrokerTask(self, check_id(task_id))

    def close(self) -> None:
        """Close the broker connection; every call after raises :class:`ClientClosed`
        (closing again does nothing)."""
        if self._closed:
            return
        self._closed = True
        self.broker.close()

    def __enter__(self) -> BrokerClient:
        self._open_broker()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class BrokerTask:
    """A task in the broker: its status and its result."""

    def __init__(
        self,
        client: BrokerClient,
        task_id: str,
        info: TaskInfo | None = None,
        watched: TaskRecord | None = None,
    ) -> None:
        self.client = client
        self.id = task_id
        #: the task when this handle was made (None: not read).
        self.info = info
        #: the task as submitted while this process watches it (its first wait uses
        #: the notice); None once waited for, or never watched.
        self._watched = watched

    def __repr__(self) -> str:
        return f"<BrokerTask {self.id} in {self.client.url}>"

    def status(self) -> TaskInfo:
        """The task now; :class:`TaskNotFound` when there is none (or it expired)."""
        broker = self.client._open_broker()
        with _broker_errors():
            record = broker.get(self.id)
        self.info = _info(self.id, record)
        return self.info

    def result(self, timeout: float | None = None) -> Any:
        """Wait until the task is done and return its result.

        Raises :class:`TaskFailed` when it failed or went to the dead-letter queue,
        :class:`TaskTimeout` when it is not done within ``timeout`` seconds (None: wait
        as long as it takes).
        """
        # NaN would never pass (a deadline no clock reaches: a busy loop of reads)
        deadline = deadline_of(check_timeout(timeout, zero=True))
        broker = self.client._open_broker()
        watched, self._watched = self._watched, None
        with _broker_errors():
            if watched is not None:
                record = _wait_watched(broker, watched, deadline)
            else:
                record = broker.wait_for_result(self.id, seconds_left(deadline))
        if record is None:
            return _outcome(self.id, None, timeout)
        self.info = TaskInfo.from_record(record)
        return _outcome(self.id, self.info, timeout)

    def cancel(self) -> TaskInfo:
        """Cancel the task (:meth:`Broker.cancel`): status ``cancelled`` when it had not
        started (it never runs), ``running`` when its worker was told to stop;
        :class:`ApiError` 409 when it had ended, :class:`TaskNotFound` when there is none."""
        broker = self.client._open_broker()
        with _broker_errors():
            cancellation = broker.cancel(self.id)
        self.info = _cancelled(self.id, cancellation)
        return self.info


class AsyncBrokerClient:
    """:class:`BrokerClient` for asyncio: the broker's calls run in worker threads."""

    def __init__(self, broker: Broker, *, caller: str | None = None) -> None:
        self.sync = BrokerClient(broker, caller=caller)

    @property
    def url(self) -> str:
        return self.sync.url

    async def submit(
        self,
        capability: str,
        input: Mapping[str, Any],
        *,
        priority: int = 0,
        idempotency_key: str | None = None,
        max_attempts: int = 3,
        timeout_s: float | None = None,
        watch: bool = True,
    ) -> AsyncBrokerTask:
        request = TaskRequest(
            capability,
            input,
            priority=priority,
            idempotency_key=idempotency_key,
            max_attempts=max_attempts,
            timeout_s=timeout_s,
        )
        return (await self.submit_many([request], watch=watch))[0]

    async def submit_many(
        self, requests: Iterable[TaskLike], *, watch: bool = True
    ) -> list[AsyncBrokerTask]:
        broker = self._open_broker()
        specs = [_spec(request, self.sync.caller) for request in requests]
        if not specs:
            return []
        with _broker_errors():
            submitted = await asyncio.to_thread(broker.submit_many, specs, watch=watch)
        records = _accepted(submitted)
        return [
            AsyncBrokerTask(self, r.id, TaskInfo.from_record(r), r if watch else None)
            for r in records
        ]

    def _open_broker(self) -> Broker:
        return self.sync._open_broker("AsyncBrokerClient")

    def task(self, task_id: str) -> AsyncBrokerTask:
        self._open_broker()
        return AsyncBrokerTask(self, check_id(task_id))

    async def aclose(self) -> None:
        """:meth:`BrokerClient.close`, in a worker thread."""
        await asyncio.to_thread(self.sync.close)

    async def __aenter__(self) -> AsyncBrokerClient:
        self._open_broker()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class AsyncBrokerTask:
    """:class:`BrokerTask` for asyncio."""

    def __init__(
        self,
        client: AsyncBrokerClient,
        task_id: str,
        info: TaskInfo | None = None,
        watched: TaskRecord | None = None,
    ) -> None:
        self.client = client
        self.id = task_id
        self.info = info
        self._watched = watched

    def __repr__(self) -> str:
        return f"<AsyncBrokerTask {self.id} in {self.client.url}>"

    async def status(self) -> TaskInfo:
        broker = self.client._open_broker()
        with _broker_errors():
            record = await asyncio.to_thread(broker.get, self.id)
        self.info = _info(self.id, record)
        return self.info

    async def result(self, timeout: float | None = None) -> Any:
        # NaN would never pass (a deadline no clock reaches: a busy loop of reads)
        deadline = deadline_of(check_timeout(timeout, zero=True))
        broker = self.client._open_broker()
        watched, self._watched = self._watched, None
        with _broker_errors():
            if watched is not None:
                record = await _wait_watched_async(broker, watched, deadline)
            else:
                record = await broker.wait_for_result_async(self.id, seconds_left(deadline))
        if record is None:
            return _outcome(self.id, None, timeout)
        self.info = TaskInfo.from_record(record)
        return _outcome(self.id, self.info, timeout)

    async def cancel(self) -> TaskInfo:
        """:meth:`BrokerTask.cancel` without blocking the event loop."""
        broker = self.client._open_broker()
        with _broker_errors():
            cancellation = await asyncio.to_thread(broker.cancel, self.id)
        self.info = _cancelled(self.id, cancellation)
        return self.info


def _check_url(url: str) -> None:
    """Refuse ``memory://``: a queue inside this process, which no worker of ``crank
    run`` can reach (it refuses it too), so every ``result()`` would wait forever."""
    if isinstance(url, str) and urlsplit(url).scheme.lower() == "memory":
        raise url_usage_error(
            url,
            "a memory:// queue lives in this process only: no worker could run its tasks",
            hint="connect to the broker crank run --broker serves: "
            "sqlite:///path/to/queue.db or redis://host:port/db",
        )


def connect(url: str, *, caller: str | None = None, **options: Any) -> BrokerClient:
    """Open the broker at ``url`` (``redis://``, ``sqlite:///``; options as for
    ``crank run --broker``) for submitting tasks and reading results.

    Raises :class:`BrokerUnavailable` when the broker cannot be reached (so does every
    call after), :class:`~crank.errors.UsageError` for a URL or option it cannot use
    (``memory://`` included: no worker could run its tasks)."""
    check_caller(caller)  # before anything is opened
    _check_url(url)
    with _broker_errors():
        broker = open_broker(url, **options)
    return BrokerClient(broker, caller=caller)


async def connect_async(
    url: str, *, caller: str | None = None, **options: Any
) -> AsyncBrokerClient:
    """:func:`connect` for asyncio (the broker is opened in a worker thread)."""
    check_caller(caller)
    _check_url(url)
    with _broker_errors():
        broker = await asyncio.to_thread(open_broker, url, **options)
    return AsyncBrokerClient(broker, caller=caller)


__all__ = [
    "AsyncBrokerClient",
    "AsyncBrokerTask",
    "BrokerClient",
    "BrokerTask",
    "TaskLike",
    "connect",
    "connect_async",
]
