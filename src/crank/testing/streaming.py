"""``MockStreamingHarness``: streaming and backpressure tests without sockets.

Connections are in-memory, each with a bounded buffer and high/low watermarks:
a producer that reaches the high watermark is paused until the consumer drains
the buffer to the low watermark. A coordinator admits or refuses connections;
the default one enforces ``max_connections`` and answers connection N+1 with a
``backpressure_applied`` result naming the limit. Time is a :class:`ManualClock`
the test advances, so nothing sleeps for real.

A worker's own streaming coordinator plugs in by implementing
:class:`StreamingCoordinator` (two async methods); the harness then drives it
with :class:`MockConnection` objects, which implement :class:`StreamConnection`,
the same small interface a real SSE or WebSocket connection adapter offers.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import json
from collections import deque
from collections.abc import AsyncIterable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

ConnectionStatus = Literal["accepted", "backpressure_applied", "rejected"]


class ManualClock:
    """Time that moves only when the test says so; ``await clock.sleep(s)`` waits for it."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._timers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._timers, (self._now + seconds, next(self._seq), future))
        await future

    def advance(self, seconds: float) -> None:
        """Move time forward and wake every sleeper whose deadline has come."""
        if seconds < 0:
            raise ValueError("a clock only moves forward")
        self._now += seconds
        while self._timers and self._timers[0][0] <= self._now:
            _, _, future = heapq.heappop(self._timers)
            if not future.done():
                future.set_result(None)

    @property
    def sleepers(self) -> int:
        return sum(1 for _, _, f in self._timers if not f.done())


@dataclass(frozen=True)
class ConnectionResult:
    """A coordinator's answer to a new connection."""

    status: ConnectionStatus
    message: str
    connection: MockConnection | None = None
    retry_after_s: float | None = None

    @property
    def accepted(self) -> bool:
        return self.status == "accepted"


@dataclass(frozen=True)
class StreamEvent:
    """What happened on a connection, and when (on the manual clock)."""

    kind: Literal["produced", "delivered", "paused", "resumed", "closed"]
    seq: int
    at: float


@runtime_checkable
class StreamConnection(Protocol):
    """What a coordinator may do with a connection (real adapters offer the same)."""

    id: str

    async def send(self, event: Mapping[str, Any]) -> None:
        """Queue one event; waits while the consumer is too slow (backpressure)."""

    async def close(self) -> None:
        """No more events; the consumer sees the end of the stream."""


class StreamingCoordinator(Protocol):
    """A worker's streaming front: admits connections and lets them go.

    ``handle_new_connection`` answers ``accepted`` or ``backpressure_applied``
    (with a message naming the limit); ``handle_disconnect`` frees the slot.
    """

    async def handle_new_connection(self, connection: StreamConnection) -> ConnectionResult: ...

    async def handle_disconnect(self, connection: StreamConnection) -> None: ...


class ConnectionLimitCoordinator:
    """The reference coordinator: at most ``max_connections`` open at once."""

    def __init__(self, max_connections: int, retry_after_s: float = 1.0) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self.max_connections = max_connections
        self.retry_after_s = retry_after_s
        self.open: set[str] = set()

    async def handle_new_connection(self, connection: StreamConnection) -> ConnectionResult:
        if len(self.open) >= self.max_connections:
            return ConnectionResult(
                "backpressure_applied",
                f"connection limit of {self.max_connections} reached "
                f"({len(self.open)} open); retry after {self.retry_after_s:g} s",
                retry_after_s=self.retry_after_s,
            )
        self.open.add(connection.id)
        return ConnectionResult("accepted", f"connection {connection.id} accepted")

    async def handle_disconnect(self, connection: StreamConnection) -> None:
        self.open.discard(connection.id)


_END = object()
#: :meth:`MockStreamingHarness.settle` stops after this many event-loop rounds in all.
SETTLE_LIMIT = 10_000


def _check_watermarks(buffer_size: int, high_watermark: int, low_watermark: int) -> None:
    if not 0 <= low_watermark < high_watermark <= buffer_size:
        raise ValueError(
            "watermarks need 0 <= low_watermark < high_watermark <= buffer_size, got "
            f"low={low_watermark} high={high_watermark} buffer={buffer_size}"
        )


class MockConnection:
    """One in-memory connection: a bounded buffer between a producer and a consumer."""

    def __init__(
        self,
        connection_id: str,
        *,
        clock: ManualClock,
        buffer_size: int,
        high_watermark: int,
        low_watermark: int,
    ) -> None:
        _check_watermarks(buffer_size, high_watermark, low_watermark)
        self.id = connection_id
        self.clock = clock
        self.buffer_size = buffer_size
        self.high_watermark = high_watermark
        self.low_watermark = low_watermark
        self.buffer: deque[Any] = deque()
        self.timeline: list[StreamEvent] = []
        self.paused = False
        self.pause_count = 0
        self.closed = False
        self.max_buffered = 0
        self._produced = 0
        self._delivered = 0
        self._resume = asyncio.Event()
        self._readable = asyncio.Event()

    def _log(
        self, kind: Literal["produced", "delivered", "paused", "resumed", "closed"], seq: int
    ) -> None:
        self.timeline.append(StreamEvent(kind, seq, self.clock.now()))

    # -- producer side -----------------------------------------------------------

    async def send(self, event: Mapping[str, Any]) -> None:
        if self.closed:
            raise ConnectionError(f"connection {self.id} is closed")
        while self.paused:
            self._resume.clear()
            await self._resume.wait()
        self._produced += 1
        self.buffer.append(event)
        self.max_buffered = max(self.max_buffered, len(self.buffer))
        self._log("produced", self._produced)
        self._readable.set()
        if len(self.buffer) >= self.high_watermark:
            self.paused = True
            self.pause_count += 1
            self._log("paused", self._produced)
        await asyncio.sleep(0)  # let a waiting consumer read it now, not at the end

    async def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.buffer.append(_END)
            self._log("closed", self._produced)
            self._readable.set()

    # -- consumer side -----------------------------------------------------------

    async def receive(self) -> Mapping[str, Any] | None:
        """The next event, waiting for one; None once the stream is closed and drained."""
        while not self.buffer:
            self._readable.clear()
            await self._readable.wait()
        item = self.buffer.popleft()
        if item is _END:
            self.buffer.appendleft(_END)
            return None
        self._delivered += 1
        self._log("delivered", self._delivered)
        if self.paused and self._pending() <= self.low_watermark:
            self.paused = False
            self._log("resumed", self._delivered)
            self._resume.set()
        return item  # type: ignore[no-any-return]

    def _pending(self) -> int:
        return sum(1 for item in self.buffer if item is not _END)

    async def sse_frames(self) -> AsyncIterable[str]:
        """The stream as Server-Sent Events frames, one per event, as they arrive."""
        while True:
            event = await self.receive()
            if event is None:
                return
            yield format_sse(event)

    @property
    def produced(self) -> int:
        return self._produced

    @property
    def delivered(self) -> int:
        return self._delivered


def format_sse(event: Mapping[str, Any], *, event_name: str | None = None) -> str:
    """``data: {...}\\n\\n`` (with an ``event:`` line when named)."""
    head = f"event: {event_name}\n" if event_name else ""
    return f"{head}data: {json.dumps(dict(event), sort_keys=True)}\n\n"


def parse_sse(frame: str) -> dict[str, Any]:
    """The JSON payload of one SSE frame produced by :func:`format_sse`."""
    data = [line[5:].strip() for line in frame.splitlines() if line.startswith("data:")]
    parsed: dict[str, Any] = json.loads("\n".join(data))
    return parsed


@dataclass
class MockStreamingHarness:
    """In-memory streaming front for tests; see the module documentation."""

    max_connections: int = 100
    buffer_size: int = 16
    high_watermark: int | None = None
    low_watermark: int | None = None
    coordinator: StreamingCoordinator | None = None
    clock: ManualClock = field(default_factory=ManualClock)
    connections: list[MockConnection] = field(default_factory=list)
    results: list[ConnectionResult] = field(default_factory=list)

    def __post_init__(self) -> None:
        for name in ("max_connections", "buffer_size", "high_watermark", "low_watermark"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
                raise ValueError(f"{name} must be a whole number, got {value!r}")
        if self.high_watermark is None:
            self.high_watermark = self.buffer_size
        if self.low_watermark is None:
            self.low_watermark = self.high_watermark // 2
        # checked here, not at the first connect() of a scenario that then dies mid-way
        _check_watermarks(self.buffer_size, self.high_watermark, self.low_watermark)
        if self.coordinator is None:
            self.coordinator = ConnectionLimitCoordinator(self.max_connections)
        self._ids = itertools.count(1)

    def new_connection(self) -> MockConnection:
        assert self.high_watermark is not None and self.low_watermark is not None
        return MockConnection(
            f"conn-{next(self._ids)}",
            clock=self.clock,
            buffer_size=self.buffer_size,
            high_watermark=self.high_watermark,
            low_watermark=self.low_watermark,
        )

    async def connect(self) -> ConnectionResult:
        """Offer a new connection to the coordinator; accepted ones are kept open."""
        assert self.coordinator is not None
        connection = self.new_connection()
        result = await self.coordinator.handle_new_connection(connection)
        if result.accepted:
            self.connections.append(connection)
            result = ConnectionResult(
                result.status, result.message, connection, result.retry_after_s
            )
        self.results.append(result)
        return result

    async def connect_many(self, count: int) -> list[ConnectionResult]:
        return [await self.connect() for _ in range(count)]

    async def disconnect(self, connection: MockConnection) -> None:
        assert self.coordinator is not None
        await connection.close()
        if connection in self.connections:
            self.connections.remove(connection)
        await self.coordinator.handle_disconnect(connection)

    @property
    def open_connections(self) -> int:
        return len(self.connections)

    async def pump(
        self,
        connection: StreamConnection,
        events: AsyncIterable[Mapping[str, Any]] | Iterable[Mapping[str, Any]],
    ) -> int:
        """Send every event of a (async) generator through ``connection``, then close it."""
        sent = 0
        if isinstance(events, AsyncIterable):
            async for event in events:
                await connection.send(event)
                sent += 1
        else:
            for event in events:
                await connection.send(event)
                sent += 1
        await connection.close()
        return sent

    async def advance(self, seconds: float) -> None:
        """Let pending work reach its next sleep, move the clock, let the woken run."""
        await self.settle()
        self.clock.advance(seconds)
        await self.settle()

    async def settle(self, rounds: int = 50) -> None:
        """Let every runnable task run until all wait on the clock, a buffer or the consumer.

        Settled means ``rounds`` event-loop rounds in a row in which nothing happened on
        a connection and no one began or stopped waiting on the clock; a producer
        filling a large buffer is not cut short. An endless stream that a consumer
        keeps draining never settles: it is left running after ``SETTLE_LIMIT`` rounds.
        """
        before, quiet = self._progress(), 0
        for _ in range(SETTLE_LIMIT):
            if quiet >= rounds:
                return
            await asyncio.sleep(0)
            now = self._progress()
            quiet = quiet + 1 if now == before else 0
            before = now

    def _progress(self) -> tuple[int, int, int]:
        """What changes while a scenario makes progress."""
        events = sum(len(connection.timeline) for connection in self.connections)
        return len(self.results), self.clock.sleepers, events
