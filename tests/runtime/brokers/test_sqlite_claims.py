"""A SQLite claim that has nothing to take reads; it never waits for the write lock."""

from __future__ import annotations

import sqlite3
import threading
from typing import TYPE_CHECKING

from crank.runtime.brokers.contract import Claim, ClaimOptions, TaskSpec
from crank.runtime.brokers.sqlite import SqliteBroker

if TYPE_CHECKING:
    from pathlib import Path


def test_a_claim_with_nothing_to_take_does_not_wait_for_another_writer(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    broker = SqliteBroker(path, busy_timeout_ms=120_000)
    other = sqlite3.connect(str(path), isolation_level=None)
    waiting = ClaimOptions("idle", limit=4, visibility_timeout_s=60, block_s=0.2)
    try:
        broker.submit_many([TaskSpec("demo.echo", {"n": 1})])
        assert len(broker.claim(ClaimOptions("busy", limit=4, visibility_timeout_s=60))) == 1
        assert broker.ack_and_claim([], waiting) == []  # lists its wake-up address first
        # another process holds the write lock, as a long submit or ack would
        other.execute("BEGIN IMMEDIATE")
        got: list[list[Claim]] = []
        idle = threading.Thread(target=lambda: got.append(broker.ack_and_claim([], waiting)))
        idle.start()
        idle.join(timeout=60)  # blocked on the lock, it would wait out the busy timeout
        finished = not idle.is_alive()
        other.execute("ROLLBACK")
        idle.join(timeout=180)
        assert finished, "a claim with nothing to take waited for the write lock"
        assert got == [[]]
        # work that is there is still claimed, by the next claim
        broker.submit_many([TaskSpec("demo.echo", {"n": 2})])
        claims = broker.ack_and_claim([], waiting)
        assert [c.task.payload for c in claims] == [{"n": 2}]
    finally:
        other.close()
        broker.close()


def test_a_lease_that_ran_out_is_claimable_without_a_wake_up(tmp_path: Path) -> None:
    broker = SqliteBroker(tmp_path / "q.db")
    try:
        broker.submit_many([TaskSpec("demo.echo", {"n": 1})])
        first = broker.claim(ClaimOptions("gone", limit=1, visibility_timeout_s=0.05))
        assert len(first) == 1
        # the read sees the expired lease: the claim takes the task again
        options = ClaimOptions("next", limit=1, visibility_timeout_s=60, block_s=30)
        again = broker.ack_and_claim([], options)
        assert [(c.task.id, c.attempt) for c in again] == [(first[0].task.id, 2)]
    finally:
        broker.close()
