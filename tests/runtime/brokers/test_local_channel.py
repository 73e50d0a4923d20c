"""The local datagram channel that carries SQLite's notices and wake-ups between processes.

A receiver's queue holds few datagrams (Linux: 10 by default), fewer than the notices of
one batch of tasks; a burst must wait for the receiver instead of being dropped.
"""

from __future__ import annotations

import threading
import time

from crank.runtime.brokers.notices import LocalChannel, LocalSender


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
