"""SQLite writers take turns on an ``flock`` of ``<file>-write`` (SQLite's own wait for
its write lock sleeps a millisecond and more between tries)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from typing import TYPE_CHECKING

import pytest

from crank.errors import BrokerError
from crank.runtime.brokers.contract import ClaimOptions, Submitted, TaskSpec
from crank.runtime.brokers.sqlite import SqliteBroker

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


@contextlib.contextmanager
def turn_held(path: Path) -> Iterator[int]:
    """Another process's turn to write: the queue's writer lock, held (a descriptor of
    our own, so the broker's ``flock`` meets it as it would another process's)."""
    fd = os.open(f"{path}-write", os.O_RDONLY | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield fd
    finally:
        os.close(fd)


def test_a_write_waits_for_its_turn_then_goes_on(tmp_path: Path) -> None:
    broker = SqliteBroker(tmp_path / "q.db", busy_timeout_ms=120_000)
    done: list[list[Submitted]] = []
    writer = threading.Thread(
        target=lambda: done.append(broker.submit_many([TaskSpec("demo.echo", {"n": 1})]))
    )
    try:
        with turn_held(tmp_path / "q.db") as turn:
            writer.start()
            writer.join(timeout=1)  # waiting for the turn, it cannot have written
            assert writer.is_alive() and not done
            assert broker.stats().pending == {}  # a reader is not held up by it
            fcntl.flock(turn, fcntl.LOCK_UN)
            writer.join(timeout=120)
        assert not writer.is_alive()
        assert broker.stats().pending == {"demo.echo": 1}
    finally:
        writer.join(timeout=120)
        broker.close()


def test_a_turn_that_never_comes_is_a_clear_error(tmp_path: Path) -> None:
    broker = SqliteBroker(tmp_path / "q.db", busy_timeout_ms=300)
    try:
        with turn_held(tmp_path / "q.db"), pytest.raises(BrokerError) as raised:
            broker.submit_many([TaskSpec("demo.echo", {"n": 1})])
        error = raised.value
        assert "another process held the write lock for 0.3 s" in str(error)
        assert str(tmp_path / "q.db") in str(error)
        assert error.hint is not None and "stuck crank process" in error.hint
        # nothing was half written, and once the turn is free the next write goes on
        assert broker.stats().pending == {}
        broker.submit_many([TaskSpec("demo.echo", {"n": 2})])
        assert broker.stats().pending == {"demo.echo": 1}
    finally:
        broker.close()


def test_a_failed_transaction_gives_the_turn_back(tmp_path: Path) -> None:
    broker = SqliteBroker(tmp_path / "q.db")
    try:
        with pytest.raises(RuntimeError), broker._write() as db:
            db.execute("INSERT INTO wake_listeners (address, updated_at) VALUES ('x', 1)")
            raise RuntimeError("a bug in the middle of a write")
        probe = os.open(f"{tmp_path / 'q.db'}-write", os.O_RDONLY)
        try:
            fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises if still held
        finally:
            os.close(probe)
        assert broker._read("SELECT count(*) FROM wake_listeners") == [(0,)]  # rolled back
    finally:
        broker.close()


def test_without_a_lock_file_the_queue_still_works(tmp_path: Path) -> None:
    (tmp_path / "q.db-write").mkdir()  # the lock file cannot be opened
    broker = SqliteBroker(tmp_path / "q.db")
    try:
        assert broker._turn is None
        broker.submit_many([TaskSpec("demo.echo", {"n": 1})])
        claims = broker.claim(ClaimOptions("w", limit=4, visibility_timeout_s=60))
        broker.ack_many([(c, {"ok": True}) for c in claims])
        record = broker.get(claims[0].task.id)
        assert record is not None and record.status == "succeeded"
    finally:
        broker.close()


def test_writers_of_two_brokers_taking_turns_lose_nothing(tmp_path: Path) -> None:
    """Two open brokers (two processes' views) submitting, claiming and acking at once."""
    path = tmp_path / "q.db"
    brokers = [SqliteBroker(path), SqliteBroker(path)]
    ids: list[list[str]] = [[], []]
    acked: list[list[str]] = [[], []]

    def work(i: int) -> None:
        broker = brokers[i]
        for n in range(50):
            specs = [TaskSpec("demo.echo", {"by": i, "n": n, "k": k}) for k in range(4)]
            ids[i] += [s.id for s in broker.submit_many(specs)]
            claims = broker.claim(ClaimOptions(f"w{i}", limit=3, visibility_timeout_s=600))
            broker.ack_many([(c, {"ok": True}) for c in claims])
            acked[i] += [c.task.id for c in claims]

    threads = [threading.Thread(target=work, args=(i,)) for i in (0, 1)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        assert not any(t.is_alive() for t in threads)
        taken = acked[0] + acked[1]
        assert len(taken) == len(set(taken))  # no task claimed twice
        rest = brokers[0].claim(ClaimOptions("rest", limit=1000, visibility_timeout_s=600))
        brokers[0].ack_many([(c, {"ok": True}) for c in rest])
        everything = set(ids[0] + ids[1])
        assert len(everything) == 400
        assert set(taken) | {c.task.id for c in rest} == everything
        records = [brokers[1].get(task_id) for task_id in everything]
        assert all(r is not None and r.status == "succeeded" for r in records)
    finally:
        for broker in brokers:
            broker.close()
