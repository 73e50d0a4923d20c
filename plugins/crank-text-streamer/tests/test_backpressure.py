"""Backpressure of the text stream, driven by crank's MockStreamingHarness (no sockets).

The limit under ``crank run`` (429 past ``max_concurrency``, across worker
processes) is tested through real processes in crank's own runtime tests.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from crank.testing import MockStreamingHarness
from crank.worker import TaskContext

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from crank.testing import WorkerHandle

WORDS = " ".join(f"w{i}" for i in range(20))


def stream(worker: WorkerHandle, data: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
    """The handler's own async generator, as the runtime's SSE adapter drives it."""
    ctx = TaskContext.for_call("text.tokens", 60)
    return worker.app.tokens(data, ctx)  # type: ignore[attr-defined,no-any-return]


def test_connection_past_the_limit_gets_backpressure_naming_it(worker: WorkerHandle) -> None:
    async def scenario() -> None:
        harness = MockStreamingHarness(coordinator=worker.app.admission)  # type: ignore[attr-defined]
        results = await harness.connect_many(4)
        assert [r.status for r in results] == ["accepted"] * 3 + ["backpressure_applied"]
        refused = results[3]
        assert "max_concurrency of 3 streams" in refused.message
        assert refused.retry_after_s == 1.0
        assert refused.connection is None
        # a stream that ends frees its slot for the next client
        await harness.disconnect(harness.connections[0])
        assert (await harness.connect()).accepted

    asyncio.run(scenario())


def test_slow_consumer_pauses_the_producer(worker: WorkerHandle) -> None:
    async def scenario() -> None:
        harness = MockStreamingHarness(
            coordinator=worker.app.admission,  # type: ignore[attr-defined]
            buffer_size=4,
            high_watermark=4,
            low_watermark=1,
        )
        connection = (await harness.connect()).connection
        assert connection is not None
        producer = asyncio.create_task(harness.pump(connection, stream(worker, {"text": WORDS})))
        await harness.settle()
        # nobody reads: the producer stops at the high watermark instead of buffering all 21
        assert (connection.paused, connection.produced, producer.done()) == (True, 4, False)

        received = [await connection.receive() for _ in range(3)]  # down to the low watermark
        assert [e["token"] for e in received if e] == ["w0", "w1", "w2"]
        await harness.settle()
        assert connection.produced > 4  # resumed once the consumer caught up

        rest = []
        while (event := await connection.receive()) is not None:
            rest.append(event)
        assert await producer == 21
        tokens = [e["token"] for e in received + rest if e["type"] == "token"]
        assert tokens == [f"w{i}" for i in range(20)]
        assert rest[-1] == {"type": "done", "count": 20, "unit": "word"}
        assert connection.max_buffered <= 4
        assert connection.pause_count >= 2

    asyncio.run(scenario())


def test_paced_events_arrive_one_by_one(worker: WorkerHandle) -> None:
    async def scenario() -> None:
        harness = MockStreamingHarness(coordinator=worker.app.admission)  # type: ignore[attr-defined]
        worker.app.sleep = harness.clock.sleep  # type: ignore[attr-defined]
        connection = (await harness.connect()).connection
        assert connection is not None
        data = {"text": "one two three", "delay_ms": 250}
        producer = asyncio.create_task(harness.pump(connection, stream(worker, data)))
        seen = []
        # the next token is still being "made" until the clock moves; done follows "three"
        for expected, produced in (("one", 1), ("two", 2), ("three", 4)):
            await harness.settle()
            assert connection.produced == produced
            event = await connection.receive()
            assert event is not None
            seen.append(event["token"])
            assert event["token"] == expected
            harness.clock.advance(0.25)
        await harness.settle()
        assert (await connection.receive()) == {"type": "done", "count": 3, "unit": "word"}
        assert await producer == 4
        kinds = [(e.kind, e.at) for e in connection.timeline if e.kind in ("produced", "delivered")]
        assert kinds[:4] == [
            ("produced", 0.0),
            ("delivered", 0.0),
            ("produced", 0.25),
            ("delivered", 0.25),
        ]

    asyncio.run(scenario())


def test_sse_frames_carry_each_event(worker: WorkerHandle) -> None:
    from crank.testing.streaming import parse_sse

    async def scenario() -> list[dict[str, Any]]:
        harness = MockStreamingHarness(coordinator=worker.app.admission)  # type: ignore[attr-defined]
        connection = (await harness.connect()).connection
        assert connection is not None
        producer = asyncio.create_task(harness.pump(connection, stream(worker, {"text": "a b"})))
        frames = [frame async for frame in connection.sse_frames()]
        await producer
        return [parse_sse(f) for f in frames]

    events = asyncio.run(scenario())
    assert [e["type"] for e in events] == ["token", "token", "done"]
