"""The server's broker I/O thread: concurrent submits share one round trip, a lone one
goes at once, errors reach every request of the batch, on every backend."""

from __future__ import annotations

import asyncio
import threading
from typing import TYPE_CHECKING, Any

import pytest

from crank.runtime.broker_io import BrokerIO
from crank.runtime.brokers.contract import IdempotencyKeyReused, TaskRecord, TaskSpec
from crank.runtime.brokers.memory import MemoryBroker

if TYPE_CHECKING:
    from collections.abc import Sequence

    from crank.runtime.brokers.contract import Broker, Submitted


def spec(n: int, key: str | None = None) -> TaskSpec:
    return TaskSpec(capability="demo.echo", payload={"n": n}, idempotency_key=key)


async def _held_batch(io: BrokerIO, specs: list[TaskSpec]) -> list[Any]:
    """Submit ``specs`` while the I/O thread is held busy, so they queue up together."""
    busy, release = threading.Event(), threading.Event()

    def hold() -> None:
        busy.set()
        release.wait(60)

    holder = asyncio.ensure_future(io.call(hold))
    await asyncio.to_thread(busy.wait, 60)
    submits = [asyncio.ensure_future(io.submit(s)) for s in specs]
    await asyncio.sleep(0)  # every submit is queued before the thread is let go
    release.set()
    await holder
    return await asyncio.gather(*submits)


def test_concurrent_submits_share_one_round_trip(broker: Broker) -> None:
    io = BrokerIO(broker)
    try:
        records = asyncio.run(_held_batch(io, [spec(i) for i in range(20)]))
        assert io.stats.round_trips == 1
        assert io.stats.largest == 20
        assert len({r.id for r in records}) == 20
        for i, record in enumerate(records):
            stored = broker.get(record.id)
            assert stored is not None and stored.payload == {"n": i}
    finally:
        io.close()


def test_one_key_in_one_batch_is_one_task(broker: Broker) -> None:
    io = BrokerIO(broker)
    try:
        first, again, other = asyncio.run(
            _held_batch(io, [spec(1, key="k"), spec(1, key="k"), spec(2, key="k")])
        )
        assert io.stats.round_trips == 1
        assert isinstance(first, TaskRecord) and isinstance(again, TaskRecord)
        assert again.id == first.id
        assert isinstance(other, IdempotencyKeyReused)  # same key, other input: refused
    finally:
        io.close()


def test_a_lone_submit_is_sent_alone(broker: Broker) -> None:
    io = BrokerIO(broker)
    try:

        async def one_by_one() -> None:
            for i in range(3):
                await io.submit(spec(i))

        asyncio.run(one_by_one())
        assert io.stats.sizes == [1, 1, 1]
    finally:
        io.close()


def test_submitted_tasks_are_counted_on_the_io_thread() -> None:
    counted: list[tuple[str, int]] = []
    io = BrokerIO(
        MemoryBroker(),
        on_submitted=lambda n: counted.append((threading.current_thread().name, n)),
    )
    try:
        asyncio.run(_held_batch(io, [spec(i) for i in range(4)]))
        assert counted == [("crank-broker-io", 4)]
    finally:
        io.close()


class _Down(MemoryBroker):
    def submit_many(self, specs: Sequence[TaskSpec], *, watch: bool = False) -> list[Submitted]:
        raise RuntimeError("broker down")


def test_a_failed_round_trip_fails_every_request_of_it() -> None:
    io = BrokerIO(_Down())
    try:
        results = asyncio.run(_gather_errors(io, [spec(i) for i in range(3)]))
        assert [str(r) for r in results] == ["broker down"] * 3
    finally:
        io.close()


async def _gather_errors(io: BrokerIO, specs: list[TaskSpec]) -> list[Any]:
    return await asyncio.gather(*(io.submit(s) for s in specs), return_exceptions=True)


def test_a_closed_io_thread_refuses_work() -> None:
    io = BrokerIO(MemoryBroker())
    io.close()
    with pytest.raises(RuntimeError, match="closed"):
        asyncio.run(io.submit(spec(0)))
