"""Server-Sent Events of a streaming task, forwarded while its handler runs.

The worker publishes each event to the broker as the handler emits it (before
the task is acked); this module looks at ``broker.read_events`` from the event
loop and writes every event as soon as it is seen. The server watches the task
(:mod:`crank.runtime.brokers.notices`), so it is told of each event and of the
end as they happen: a look runs when a notice comes (each look one short call on
the broker I/O thread), and otherwise only every ``DISCONNECT_CHECK_S`` as a safety
net; an idle stream holds no thread. Without notices (a backend that sends none)
it looks every 5 ms to 50 ms. The end of the stream is the task's final status: when a
look finds no new event, the task is read; once it is done, one more read takes
the events published just before the ack, and only a look that finds the task
done *and* no event left ends the stream.

Wire format, per event ``id: <n>`` / ``event: message`` / ``data: <json>``;
at the end ``event: end`` with ``{"id": task, "events": count}``, or, when
the task failed or ran past its timeout after events were sent, ``event:
error`` with the error. A comment line (``: keep-alive``) goes out after
``KEEPALIVE_S`` without events, so proxies keep the connection open.

A resumed stream (``GET /v1/tasks/{id}/events``) starts after the last event
the client has. A task that ended without an event in the broker (its worker
publishes none, or they expired) replays the events of its result instead,
numbered from 1 as they stand there.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool

from crank.runtime.http.responses import not_json

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Mapping, Sequence

    from crank.runtime.broker_io import BrokerIO
    from crank.runtime.brokers.contract import Broker, ResultListener, TaskRecord

#: the largest event number a stream resumes after (brokers number events with 64-bit integers).
MAX_EVENT_ID = 2**63 - 1
#: events taken per look.
PAGE = 100
#: first pause between two looks that found nothing, and the longest one.
MIN_POLL_S = 0.005
MAX_POLL_S = 0.05
#: a comment line after this long without events.
KEEPALIVE_S = 15.0
#: how often an idle stream asks whether the client is still there.
DISCONNECT_CHECK_S = 0.5

Events = list[tuple[int, "Mapping[str, Any]"]]


@dataclass(frozen=True)
class Look:
    """What one look at the broker found."""

    events: Events
    #: the task, read only when no new event was found (None: not read, or gone).
    record: TaskRecord | None = None
    #: the task is done (or gone) and every event it published has been read.
    finished: bool = False


def look(broker: Broker, task_id: str, after: int) -> Look:
    """New events; when there are none, the task's state (blocking; run it in a thread)."""
    events = broker.read_events(task_id, after, limit=PAGE)
    if events:
        return Look(events)
    record = broker.get(task_id)
    if record is not None and not record.done:
        return Look([], record)
    # done (or expired): events published before the ack are all there now
    trailing = broker.read_events(task_id, after, limit=PAGE)
    return Look(trailing, record, finished=not trailing)


def _unpublished_events(broker: Broker, record: TaskRecord, after: int) -> Events:
    """A succeeded task's result events above ``after`` when the broker holds none (blocking).

    Its worker published none, or they expired: the result holds them all, numbered from 1.
    """
    if record.status != "succeeded" or broker.read_events(record.id, 0, limit=1):
        return []
    events = record.result if isinstance(record.result, list) else [record.result]
    return [(seq, event) for seq, event in enumerate(events, start=1) if seq > after]


def format_event(seq: int, event: Mapping[str, Any]) -> bytes:
    """One event's frame; ValueError for an event holding a NaN or an infinity (Python's
    ``json`` would write ``NaN``, which no client's JSON reader takes)."""
    return f"id: {seq}\nevent: message\ndata: {json.dumps(event, allow_nan=False)}\n\n".encode()


def event_frame(task_id: str, seq: int, event: Mapping[str, Any]) -> tuple[bytes, bool]:
    """The frame of one event and whether the stream goes on: an event JSON cannot write
    (stored by a producer that does not check its values) ends it with ``event: error``
    ``TASK_NOT_JSON`` instead of a ``data:`` line no client can read."""
    try:
        return format_event(seq, event), True
    except ValueError:
        subject = f"event {seq} of task {task_id}"
        return format_error(not_json(task_id, event, subject=subject)), False


def format_end(task_id: str, count: int) -> bytes:
    return f"event: end\ndata: {json.dumps({'id': task_id, 'events': count})}\n\n".encode()


def format_error(body: Mapping[str, Any]) -> bytes:
    return f"event: error\ndata: {json.dumps(dict(body))}\n\n".encode()


class _Pacer:
    """Waits between two looks: for the task's next notice when the server watches it
    (up to ``DISCONNECT_CHECK_S``), else pauses that grow while nothing comes and
    shrink back when an event arrives."""

    def __init__(self, task_id: str, notices: ResultListener | None) -> None:
        self.task_id = task_id
        self.notices = notices
        self.delay = MIN_POLL_S

    def reset(self) -> None:
        self.delay = MIN_POLL_S

    async def pause(self, deadline: float) -> None:
        left = max(0.0, deadline - time.monotonic())
        if self.notices is not None:
            await self.notices.wait_async(self.task_id, min(DISCONNECT_CHECK_S, left))
            return
        await asyncio.sleep(min(self.delay, left))
        self.delay = min(self.delay * 2, MAX_POLL_S)


async def _look(broker: Broker, task_id: str, after: int, io: BrokerIO | None) -> Look:
    if io is not None:
        found: Look = await io.call(lambda: look(broker, task_id, after))
        return found
    return await run_in_threadpool(look, broker, task_id, after)


async def first_look(
    broker: Broker,
    task_id: str,
    deadline: float,
    *,
    io: BrokerIO | None = None,
    notices: ResultListener | None = None,
) -> Look | None:
    """Wait for the task's first events or its end; None when the deadline passes first.

    ``notices``: the server watches the task (expected there), so looks follow its
    notices; ``io``: the broker I/O thread the looks run on.
    """
    pacer = _Pacer(task_id, notices)
    while True:
        found = await _look(broker, task_id, 0, io)
        if found.events or found.record is None or found.record.done:
            return found
        if time.monotonic() >= deadline:
            return None
        await pacer.pause(deadline)


def _failure(record: TaskRecord | None, task_id: str) -> dict[str, Any] | None:
    """The ``event: error`` body of a task that did not succeed; None when it did."""
    if record is None:
        return {
            "code": "TASK_NOT_FOUND",
            "message": f"task {task_id} is gone (its result expired)",
            "id": task_id,
        }
    if record.status == "succeeded":
        return None
    error = dict(record.error or {})
    return {
        "code": str(error.get("code", "WORKER_FAILED")),
        "message": str(error.get("message", f"task {task_id} {record.status}")),
        "id": task_id,
        "status": record.status,
        "attempts": record.attempts,
    }


async def live_events(
    broker: Broker,
    task_id: str,
    first: Sequence[tuple[int, Mapping[str, Any]]],
    *,
    deadline: float,
    timeout_s: float,
    is_disconnected: Callable[[], Any],
    after: int = 0,
    io: BrokerIO | None = None,
    notices: ResultListener | None = None,
    on_close: Callable[[], None] | None = None,
) -> AsyncIterator[bytes]:
    """The SSE body: ``first`` events, then each new one as it is published, then the end.

    ``after`` is the number of the last event the client already has (0: none);
    ``first`` holds events numbered above it. ``io`` and ``notices`` as for
    :func:`first_look`; ``on_close`` runs when the stream ends, however it ends.
    """
    try:
        async for chunk in _live_events(
            broker,
            task_id,
            first,
            deadline=deadline,
            timeout_s=timeout_s,
            is_disconnected=is_disconnected,
            after=after,
            io=io,
            notices=notices,
        ):
            yield chunk
    finally:
        if on_close is not None:
            on_close()


async def _live_events(
    broker: Broker,
    task_id: str,
    first: Sequence[tuple[int, Mapping[str, Any]]],
    *,
    deadline: float,
    timeout_s: float,
    is_disconnected: Callable[[], Any],
    after: int,
    io: BrokerIO | None,
    notices: ResultListener | None,
) -> AsyncIterator[bytes]:
    sent = 0
    for seq, event in first:
        frame, goes_on = event_frame(task_id, seq, event)
        yield frame
        if not goes_on:
            return
        sent, after = sent + 1, seq
    pacer = _Pacer(task_id, notices)
    last_write = next_disconnect_check = time.monotonic()
    while True:
        found = await _look(broker, task_id, after, io)
        for seq, event in found.events:
            frame, goes_on = event_frame(task_id, seq, event)
            yield frame
            if not goes_on:
                return
            sent, after = sent + 1, seq
        now = time.monotonic()
        if found.events:
            pacer.reset()
            last_write = now
            continue
        if found.finished:
            if sent == 0 and found.record is not None:
                replay = await run_in_threadpool(_unpublished_events, broker, found.record, after)
                for seq, event in replay:
                    frame, goes_on = event_frame(task_id, seq, event)
                    yield frame
                    if not goes_on:
                        return
                sent += len(replay)
            failure = _failure(found.record, task_id)
            yield format_end(task_id, sent) if failure is None else format_error(failure)
            return
        if now >= deadline:
            yield format_error(
                {
                    "code": "TIMEOUT",
                    "message": f"the task did not finish within {timeout_s:g} s",
                    "hint": f"the task goes on; poll /v1/tasks/{task_id}",
                    "id": task_id,
                }
            )
            return
        if now >= next_disconnect_check:
            next_disconnect_check = now + DISCONNECT_CHECK_S
            if await is_disconnected():
                return
        if now - last_write >= KEEPALIVE_S:
            last_write = now
            yield b": keep-alive\n\n"
        await pacer.pause(deadline)


__all__ = [
    "MAX_EVENT_ID",
    "Look",
    "event_frame",
    "first_look",
    "format_end",
    "format_event",
    "live_events",
    "look",
]
