"""Streaming events through the broker, on every backend (memory, SQLite, Redis Streams)."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

import pytest

from crank.runtime.brokers import open_broker
from crank.runtime.brokers.contract import ClaimOptions, TaskSpec

if TYPE_CHECKING:
    from collections.abc import Iterator

    from crank.runtime.brokers.contract import Broker


@pytest.fixture
def second(broker: Broker, broker_url: str) -> Iterator[Broker]:
    """Another connection to the same queue (the same object for the in-process broker)."""
    if broker_url.startswith("memory://"):
        yield broker
        return
    other = open_broker(broker_url)
    try:
        yield other
    finally:
        other.close()


def test_events_are_numbered_from_one_in_publish_order(broker: Broker) -> None:
    broker.publish_events("t1", [{"i": 1}, {"i": 2}])
    broker.publish_events("t1", [{"i": 3}])
    assert broker.read_events("t1", 0) == [(1, {"i": 1}), (2, {"i": 2}), (3, {"i": 3})]
    assert broker.read_events("t1", 2) == [(3, {"i": 3})]
    assert broker.read_events("t1", 3) == []


def test_limit_pages_through_the_events(broker: Broker) -> None:
    broker.publish_events("t1", [{"i": i} for i in range(1, 8)])
    first = broker.read_events("t1", 0, limit=3)
    assert [seq for seq, _ in first] == [1, 2, 3]
    rest = broker.read_events("t1", first[-1][0], limit=100)
    assert [event["i"] for _, event in rest] == [4, 5, 6, 7]


def test_events_of_one_task_do_not_leak_into_another(broker: Broker) -> None:
    broker.publish_events("a", [{"who": "a"}])
    broker.publish_events("b", [{"who": "b"}, {"who": "b2"}])
    assert broker.read_events("a", 0) == [(1, {"who": "a"})]
    assert [seq for seq, _ in broker.read_events("b", 0)] == [1, 2]
    assert broker.read_events("nobody", 0) == []


def test_nested_values_survive_the_round_trip(broker: Broker) -> None:
    event = {"text": "héllo ✓", "n": 1.5, "tags": ["a", None], "deep": {"ok": True}}
    broker.publish_events("t1", [event])
    assert broker.read_events("t1", 0) == [(1, event)]


def test_an_event_that_is_not_json_is_refused_and_nothing_is_published(broker: Broker) -> None:
    with pytest.raises(TypeError):
        broker.publish_events("t1", [{"ok": 1}, {"bad": object()}])
    assert broker.read_events("t1", 0) == []


def test_blocking_read_wakes_on_a_publish_from_another_connection(
    broker: Broker, second: Broker
) -> None:
    got: list[list[tuple[int, object]]] = []
    reader = threading.Thread(
        target=lambda: got.append(list(broker.read_events("t1", 0, block_s=60.0)))
    )
    reader.start()
    # Nothing shows when the read starts to block; a moment's pause makes that the
    # usual order. The assertion holds in either order: the read waits up to a minute
    # and returns as soon as the event is there.
    time.sleep(0.05)
    second.publish_events("t1", [{"i": 1}])
    reader.join(timeout=90)
    assert not reader.is_alive()
    assert got == [[(1, {"i": 1})]]


def test_blocking_read_returns_empty_when_nothing_comes(broker: Broker) -> None:
    broker.publish_events("t1", [{"i": 1}])
    assert broker.read_events("t1", 1, block_s=0.2) == []
    assert broker.read_events("other", 0, block_s=0.2) == []


def test_concurrent_publishers_get_distinct_consecutive_numbers(
    broker: Broker, second: Broker
) -> None:
    def publish(into: Broker, tag: str) -> None:
        for i in range(20):
            into.publish_events("t1", [{"tag": tag, "i": i}])

    threads = [
        threading.Thread(target=publish, args=(broker, "a")),
        threading.Thread(target=publish, args=(second, "b")),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    events = broker.read_events("t1", 0, limit=100)
    assert [seq for seq, _ in events] == list(range(1, 41))
    for tag in ("a", "b"):  # each publisher's events keep their order
        assert [e["i"] for _, e in events if e["tag"] == tag] == list(range(20))


def test_all_events_are_readable_once_the_task_is_done(broker: Broker) -> None:
    """Events are published before the ack: done, then one more read, misses nothing."""
    record = broker.submit(TaskSpec(capability="demo.count", payload={"n": 2}))
    [claim] = broker.claim(ClaimOptions("w1"))
    broker.publish_events(record.id, [{"i": 1}])
    assert broker.read_events(record.id, 0) == [(1, {"i": 1})]
    broker.publish_events(record.id, [{"i": 2}])
    broker.ack(claim, [{"i": 1}, {"i": 2}])
    done = broker.get(record.id)
    assert done is not None
    assert done.done
    assert broker.read_events(record.id, 1) == [(2, {"i": 2})]


@pytest.mark.slow
def test_events_expire_with_the_result_ttl(broker_url: str) -> None:
    broker = open_broker(broker_url, result_ttl_s=1.0)
    try:
        published_at = time.monotonic()
        broker.publish_events("t1", [{"i": 1}])
        assert broker.read_events("t1", 0) == [(1, {"i": 1})]
        deadline = published_at + 60
        while time.monotonic() < deadline:
            broker.submit(TaskSpec(capability="demo.echo", payload={}))  # a write purges
            if broker.read_events("t1", 0) == []:
                break
            time.sleep(0.05)
        assert broker.read_events("t1", 0) == []
        # clocks may round the TTL's end by a few milliseconds
        assert time.monotonic() - published_at >= 1.0 - 0.01  # not before the TTL
    finally:
        broker.close()
