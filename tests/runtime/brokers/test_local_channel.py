"""The local datagram channel that carries SQLite's notices and wake-ups between processes.

A receiver's queue holds few datagrams (Linux: 10 by default), fewer than the notices of
one batch of tasks; a burst must wait for the receiver instead of being dropped.
"""

from __future__ import annotations

import json
import threading
import time
from typing import TYPE_CHECKING

from crank.runtime.brokers import contract, open_broker
from crank.runtime.brokers.contract import ClaimOptions, TaskSpec
from crank.runtime.brokers.notices import (
    BUNDLE_BYTES,
    BUNDLE_SEPARATOR,
    LocalChannel,
    LocalSender,
    bundles,
)

if TYPE_CHECKING:
    from pathlib import Path

    import pytest


def test_a_burst_larger_than_the_queue_arrives_whole_and_in_order() -> None:
    channel = LocalChannel("test-burst")
    sender = LocalSender(wait_s=120)  # a busy machine may take long to schedule the reader
    sent = [f"t{n} succeeded 1".encode() for n in range(300)]
    results: list[bool] = []
    thread = threading.Thread(
        target=lambda: results.extend(sender.send(channel.address, m, wait=True) for m in sent)
    )
    try:
        thread.start()
        received: list[bytes] = []
        deadline = time.monotonic() + 120
        while len(received) < len(sent) and time.monotonic() < deadline:
            received.extend(channel.receive(1.0))
        thread.join(timeout=120)
        assert received == sent
        assert results == [True] * len(sent)
        assert sender.dropped == 0
    finally:
        sender.close()
        channel.close()


def test_a_receiver_that_never_reads_is_skipped_not_waited_on_forever() -> None:
    channel = LocalChannel("test-stuck")
    sender = LocalSender(wait_s=0.01, backoff_s=3600)
    try:
        answers = [sender.send(channel.address, b"t succeeded 1", wait=True) for _ in range(5_000)]
        # the queue took what it holds; the rest were dropped (counted), none raised
        assert answers[0] is True
        assert answers[-1] is False
        assert sender.dropped == answers.count(False) > 0
        assert len(channel.receive(0.0)) == answers.count(True)
        # drained: the backoff skips a full queue only, an empty one takes messages again
        assert sender.send(channel.address, b"t succeeded 2") is True
    finally:
        sender.close()
        channel.close()


def test_a_receiver_that_is_gone_is_skipped() -> None:
    channel = LocalChannel("test-gone")
    address = channel.address
    channel.close()
    sender = LocalSender()
    try:
        assert sender.send(address, b"t succeeded 1") is False
        assert sender.dropped == 1
    finally:
        sender.close()


def test_a_wake_up_to_a_full_queue_is_dropped_at_once() -> None:
    # a wake-up is a hint to a worker that is busy when its queue is full: the sender
    # (a producer, or another worker acking) must never wait on it
    channel = LocalChannel("test-wake")
    sender = LocalSender(wait_s=3600)  # were it waited on, this test would hang
    try:
        answers = [sender.send(channel.address, b"w") for _ in range(5_000)]
        assert answers[0] is True
        assert answers[-1] is False
        assert sender.dropped == answers.count(False)
    finally:
        sender.close()
        channel.close()


def test_notices_are_bundled_into_datagrams_that_a_receiver_reads_whole() -> None:
    messages = [f't{n} succeeded 1\n{{"n": {n}}}'.encode() for n in range(5_000)]
    datagrams = bundles(messages)
    assert 1 < len(datagrams) < 10
    assert all(len(d) <= BUNDLE_BYTES for d in datagrams)
    # split at the separator, they give back every notice, in order
    assert [p for d in datagrams for p in d.split(BUNDLE_SEPARATOR)] == messages
    assert bundles([]) == []
    assert bundles([b"t1 succeeded 1"]) == [b"t1 succeeded 1"]


def test_a_batch_of_acks_reaches_the_waiting_process_in_one_datagram(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # more notices than a receiver's queue holds (10): bundled, nothing waits or drops
    monkeypatch.setattr(contract, "SAFETY_POLL_S", 3600.0)  # a waiter returns by its notice
    url = f"sqlite:///{tmp_path / 'queue.db'}"
    server, worker = open_broker(url), open_broker(url)
    try:
        records = server.submit_many(
            [TaskSpec("demo.echo", {"n": n}) for n in range(300)], watch=True
        )
        claims = worker.claim(ClaimOptions("w1", limit=300))
        assert len(claims) == 300
        worker.ack_many([(c, {"echo": c.task.payload["n"]}) for c in claims])
        sender = worker._sender  # type: ignore[attr-defined]
        assert (sender.sent, sender.dropped) == (1, 0)
        notices = server.result_notices()
        assert notices is not None
        for record in records:
            notice = notices.wait(record.id, 3600)
            assert notice is not None
            finished = notice.finish(record)
            assert finished is not None
            assert (finished.status, finished.result) == (
                "succeeded",
                {"echo": record.payload["n"]},
            )
    finally:
        server.close()
        worker.close()


def _notice_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "crank-result-notices"]


def test_an_event_loop_reads_the_notices_of_a_server_without_a_thread(tmp_path: Path) -> None:
    import asyncio

    path = tmp_path / "q.db"
    server = open_broker(f"sqlite:///{path}")
    worker = open_broker(f"sqlite:///{path}")  # another process's broker, as a worker's
    notices = server.result_notices()
    assert notices is not None
    assert len(_notice_threads()) == 1  # a thread reads until a loop takes over

    async def scenario() -> list[contract.Notice | None]:
        server.listen_in(asyncio.get_running_loop())
        assert _notice_threads() == []
        records = server.submit_many(
            [TaskSpec("demo.echo", {"n": n}) for n in range(3)], watch=True
        )
        ids = [r.id for r in records if isinstance(r, contract.TaskRecord)]
        waits = [asyncio.ensure_future(notices.wait_async(i, 120)) for i in ids]
        claims = worker.claim(ClaimOptions("w", limit=3, visibility_timeout_s=60))
        worker.ack_many([(c, {"echo": c.task.payload["n"]}) for c in claims])
        return list(await asyncio.wait_for(asyncio.gather(*waits), 120))

    try:
        got = asyncio.run(scenario())
        assert [(n.status, n.ended) for n in got if n is not None] == [("succeeded", True)] * 3
        bodies = [json.loads(n.body) for n in got if n is not None and n.body is not None]
        assert bodies == [{"echo": 0}, {"echo": 1}, {"echo": 2}]
    finally:
        worker.close()
        server.close()  # the loop has closed: the socket just closes
    assert _notice_threads() == []


def test_a_broker_closed_on_its_loop_stops_reading_there(tmp_path: Path) -> None:
    import asyncio

    broker = open_broker(f"sqlite:///{tmp_path / 'q.db'}")

    async def scenario() -> bool:
        loop = asyncio.get_running_loop()
        broker.listen_in(loop)
        listener = broker._listener  # type: ignore[attr-defined]
        fd = listener.channel.sock.fileno()
        broker.close()
        # the loop no longer watches the closed socket (a watched closed fd would spin)
        return bool(loop.remove_reader(fd))

    assert asyncio.run(scenario()) is False
