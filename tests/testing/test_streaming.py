"""MockStreamingHarness: connection limits, watermarks, one-by-one SSE delivery."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import pytest

from crank.testing import MockStreamingHarness
from crank.testing.streaming import (
    ConnectionResult,
    ManualClock,
    MockConnection,
    StreamConnection,
    parse_sse,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


def test_connection_n_plus_one_gets_backpressure_naming_the_limit() -> None:
    async def scenario() -> None:
        harness = MockStreamingHarness(max_connections=3)
        accepted = await harness.connect_many(3)
        assert [r.status for r in accepted] == ["accepted"] * 3
        overflow = await harness.connect()
        assert overflow.status == "backpressure_applied"
        assert "connection limit" in overflow.message
        assert overflow.message == "connection limit of 3 reached (3 open); retry after 1 s"
        assert overflow.connection is None
        assert harness.open_connections == 3
        first = accepted[0].connection
        assert first is not None
        await harness.disconnect(first)
        assert (await harness.connect()).status == "accepted"

    asyncio.run(scenario())


def test_the_fixture_defaults_to_one_hundred_connections(
    mock_streaming_harness: MockStreamingHarness,
) -> None:
    async def scenario() -> ConnectionResult:
        await mock_streaming_harness.connect_many(100)
        return await mock_streaming_harness.connect()

    result = asyncio.run(scenario())
    assert result.status == "backpressure_applied"
    assert result.message.startswith("connection limit of 100 reached")


def test_a_slow_consumer_pauses_the_producer_between_watermarks() -> None:
    async def scenario() -> None:
        harness = MockStreamingHarness(buffer_size=8, high_watermark=4, low_watermark=1)
        conn = (await harness.connect()).connection
        assert conn is not None
        producer = asyncio.create_task(harness.pump(conn, ({"n": i} for i in range(1, 11))))
        await harness.settle()
        # the producer stopped at the high watermark and waits
        assert (conn.paused, conn.produced, len(conn.buffer)) == (True, 4, 4)
        assert not producer.done()
        # draining to just above the low watermark does not resume it
        await conn.receive()
        await conn.receive()
        await harness.settle()
        assert (conn.paused, conn.produced) == (True, 4)
        # reaching the low watermark does
        await conn.receive()
        await harness.settle()
        assert conn.produced == 7 and conn.paused
        received = [event async for event in _drain(conn)]
        assert [e["n"] for e in received] == [4, 5, 6, 7, 8, 9, 10]
        assert await producer == 10
        assert conn.max_buffered == 4  # never above the high watermark
        kinds = [e.kind for e in conn.timeline if e.kind in ("paused", "resumed")]
        assert conn.pause_count >= 2
        assert kinds == ["paused", "resumed"] * conn.pause_count

    asyncio.run(scenario())


def test_settle_lets_a_producer_reach_a_high_watermark_above_fifty() -> None:
    """settle() gave up after 50 event-loop rounds: a producer bound for a watermark of
    100 stood at 50 events, running and unpaused, and the test saw a made-up state."""

    async def scenario() -> None:
        harness = MockStreamingHarness(buffer_size=200, high_watermark=100, low_watermark=10)
        conn = (await harness.connect()).connection
        assert conn is not None
        producer = asyncio.create_task(harness.pump(conn, ({"n": i} for i in range(500))))
        await harness.settle()
        assert (conn.paused, conn.produced) == (True, 100)
        producer.cancel()

    asyncio.run(scenario())


async def _drain(conn: MockConnection) -> AsyncIterator[Any]:
    while (event := await conn.receive()) is not None:
        yield event


def test_sse_events_arrive_one_by_one() -> None:
    async def scenario() -> None:
        harness = MockStreamingHarness()
        conn = (await harness.connect()).connection
        assert conn is not None

        async def tokens() -> AsyncIterator[dict[str, Any]]:
            for i in (1, 2, 3):
                yield {"token": i}
                await harness.clock.sleep(1.0)  # the model needs a second per token

        producer = asyncio.create_task(harness.pump(conn, tokens()))
        frames = conn.sse_frames().__aiter__()
        first = await anext(frames)
        assert first == 'data: {"token": 1}\n\n'
        assert conn.produced == 1  # event 2 does not exist yet: nothing is batched
        await harness.advance(1.0)
        assert parse_sse(await anext(frames)) == {"token": 2}
        await harness.advance(1.0)
        assert parse_sse(await anext(frames)) == {"token": 3}
        await harness.advance(1.0)
        with pytest.raises(StopAsyncIteration):
            await anext(frames)
        await producer
        order = [
            (e.kind, e.seq, e.at) for e in conn.timeline if e.kind in ("produced", "delivered")
        ]
        assert order == [
            ("produced", 1, 0.0),
            ("delivered", 1, 0.0),
            ("produced", 2, 1.0),
            ("delivered", 2, 1.0),
            ("produced", 3, 2.0),
            ("delivered", 3, 2.0),
        ]

    asyncio.run(scenario())


def test_a_worker_that_batches_its_events_is_caught() -> None:
    """The same assertion fails for a handler that only sends at the end."""

    async def scenario() -> float:
        harness = MockStreamingHarness()
        conn = (await harness.connect()).connection
        assert conn is not None

        async def batched() -> AsyncIterator[dict[str, Any]]:
            collected = []
            for i in (1, 2, 3):
                collected.append({"token": i})
                await harness.clock.sleep(1.0)
            for event in collected:
                yield event

        producer = asyncio.create_task(harness.pump(conn, batched()))
        for _ in range(3):
            await harness.advance(1.0)
        await conn.receive()
        await producer
        return next(e.at for e in conn.timeline if e.kind == "delivered")

    # a streaming handler delivers token 1 at t=0 (see above); this one only at t=3
    assert asyncio.run(scenario()) == 3.0


class RoomCoordinator:
    """A worker's own coordinator: two rooms of one connection each."""

    def __init__(self) -> None:
        self.rooms: dict[str, str] = {}
        self.left: list[str] = []

    async def handle_new_connection(self, connection: StreamConnection) -> ConnectionResult:
        free = [room for room in ("a", "b") if room not in self.rooms]
        if not free:
            return ConnectionResult(
                "backpressure_applied", "connection limit of 2 rooms reached", retry_after_s=5.0
            )
        self.rooms[free[0]] = connection.id
        await connection.send({"joined": free[0]})
        return ConnectionResult("accepted", f"joined room {free[0]}")

    async def handle_disconnect(self, connection: StreamConnection) -> None:
        self.left.append(connection.id)
        self.rooms = {k: v for k, v in self.rooms.items() if v != connection.id}


def test_a_workers_own_coordinator_plugs_in() -> None:
    async def scenario() -> None:
        coordinator = RoomCoordinator()
        harness = MockStreamingHarness(coordinator=coordinator)
        first, second, third = await harness.connect_many(3)
        assert [r.status for r in (first, second, third)] == [
            "accepted",
            "accepted",
            "backpressure_applied",
        ]
        assert third.message == "connection limit of 2 rooms reached"
        assert third.retry_after_s == 5.0
        assert first.connection is not None
        assert isinstance(first.connection, StreamConnection)
        assert await first.connection.receive() == {"joined": "a"}
        await harness.disconnect(first.connection)
        assert coordinator.left == ["conn-1"]
        assert (await harness.connect()).message == "joined room a"

    asyncio.run(scenario())


def test_manual_clock_wakes_sleepers_only_when_advanced() -> None:
    async def scenario() -> None:
        clock = ManualClock()
        woke: list[float] = []

        async def sleeper(seconds: float) -> None:
            await clock.sleep(seconds)
            woke.append(clock.now())

        tasks = [asyncio.create_task(sleeper(s)) for s in (2.0, 1.0)]
        await asyncio.sleep(0)
        assert clock.sleepers == 2
        clock.advance(0.5)
        await asyncio.sleep(0)
        assert woke == []
        clock.advance(1.0)
        await asyncio.sleep(0)
        assert woke == [1.5]
        clock.advance(1.0)
        await asyncio.gather(*tasks)
        assert woke == [1.5, 2.5]
        with pytest.raises(ValueError, match="only moves forward"):
            clock.advance(-1)

    asyncio.run(scenario())


def test_bad_watermarks_are_refused() -> None:
    with pytest.raises(ValueError) as caught:
        MockConnection("c", clock=ManualClock(), buffer_size=4, high_watermark=8, low_watermark=2)
    assert str(caught.value) == (
        "watermarks need 0 <= low_watermark < high_watermark <= buffer_size, "
        "got low=2 high=8 buffer=4"
    )


@pytest.mark.parametrize(
    ("sizes", "got"),
    [
        ({"buffer_size": 4, "high_watermark": 8}, "low=4 high=8 buffer=4"),
        ({"high_watermark": 2, "low_watermark": 5}, "low=5 high=2 buffer=16"),
    ],
)
def test_a_harness_with_bad_watermarks_is_refused_when_made(
    sizes: dict[str, Any], got: str
) -> None:
    # not at the first connect(), in the middle of a scenario
    with pytest.raises(ValueError) as caught:
        MockStreamingHarness(**sizes)
    assert str(caught.value) == (
        f"watermarks need 0 <= low_watermark < high_watermark <= buffer_size, got {got}"
    )


def test_a_harness_size_that_is_not_a_number_is_refused() -> None:
    with pytest.raises(ValueError) as caught:
        MockStreamingHarness(buffer_size="8")  # type: ignore[arg-type]
    assert str(caught.value) == "buffer_size must be a whole number, got '8'"


def test_sending_on_a_closed_connection_fails() -> None:
    async def scenario() -> None:
        harness = MockStreamingHarness()
        conn = (await harness.connect()).connection
        assert conn is not None
        await conn.close()
        with pytest.raises(ConnectionError, match="conn-1 is closed"):
            await conn.send({"late": True})

    asyncio.run(scenario())
