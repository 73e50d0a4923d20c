"""A SQLite queue with much in it: a claim costs what it takes, whatever other
capabilities have queued; counting holds up no writer; a purge is bounded.

The claim used to scan the ready tasks of every capability in priority order and
skip those of the others: with 200,000 tasks of another capability queued ahead, a
claim held the write lock for 36 ms, and every submit waited for it. The work a
claim does is counted here in SQLite's own virtual-machine steps (a progress
handler), which do not depend on the machine's speed or load.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import pytest

from crank.runtime.brokers import sqlite as sqlite_broker
from crank.runtime.brokers.contract import ClaimOptions, TaskPage, TaskQuery, TaskSpec
from crank.runtime.brokers.sqlite import _BULK_MOST, _UNION_MOST, SqliteBroker

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

BACKLOG = 20_000


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[SqliteBroker]:
    opened = SqliteBroker(tmp_path / "q.db")
    yield opened
    opened.close()


@contextmanager
def counted(db: sqlite3.Connection) -> Iterator[list[int]]:
    """``[n]``: the SQLite VM steps ``db`` ran inside the block, in hundreds."""
    count = [0]

    def step() -> int:
        count[0] += 1
        return 0

    db.set_progress_handler(step, 100)
    try:
        yield count
    finally:
        db.set_progress_handler(None, 100)


def steps_of(broker: SqliteBroker, options: ClaimOptions) -> tuple[int, list[str]]:
    """(SQLite VM steps, in hundreds, the claim took; the claimed tasks' capabilities)."""
    with counted(broker._db) as count:
        claims = broker.claim(options)
    return count[0], [c.task.capability for c in claims]


def claims_cheaply(broker: SqliteBroker, options: ClaimOptions, count: int) -> None:
    """A claim gets ``count`` tasks of the one capability of ``options``, then one
    finds nothing left; each runs fewer SQLite steps than one per hundred tasks of the
    backlog. (Walking a backlog costs about 6 to 14 steps per task walked; taking three
    costs about 500.)"""
    assert options.capabilities is not None
    steps, got = steps_of(broker, options)
    assert got == [options.capabilities[0]] * count
    assert steps < BACKLOG / 100, f"the claim took {steps * 100} steps"
    steps, got = steps_of(broker, options)
    assert got == []
    assert steps < BACKLOG / 100, f"the empty claim took {steps * 100} steps"


def test_a_claim_does_not_walk_past_another_capabilitys_backlog(broker: SqliteBroker) -> None:
    broker.submit_many([TaskSpec("bulk.import", {"n": i}) for i in range(BACKLOG)])
    broker.submit_many([TaskSpec("demo.echo", {"n": i}) for i in range(3)])
    options = ClaimOptions("w1", capabilities=("demo.echo",), limit=3, visibility_timeout_s=60)
    claims_cheaply(broker, options, 3)  # the code before took 280,400 steps here


def test_a_claim_does_not_walk_another_capabilitys_expired_leases(broker: SqliteBroker) -> None:
    """Leases that ran out (their worker died) of a capability this worker does not
    serve: two deployments sharing a queue file, one of them down. Each claim looks
    for expired leases of its own capabilities first; by expiry alone, that look
    walked all of the other's."""
    broker.submit_many([TaskSpec("bulk.import", {"n": i}) for i in range(BACKLOG)])
    dead = ClaimOptions("gone", capabilities=("bulk.import",), limit=BACKLOG)
    assert len(broker.claim(dead)) == BACKLOG
    with broker._lock:  # as if their worker died long ago
        broker._db.execute("UPDATE tasks SET visible_at = rowid WHERE status = 'running'")
    broker.submit_many([TaskSpec("demo.echo", {"n": i}) for i in range(3)])
    options = ClaimOptions("w1", capabilities=("demo.echo",), limit=8, visibility_timeout_s=60)
    steps, got = steps_of(broker, options)
    assert got == ["demo.echo"] * 3
    assert steps < BACKLOG / 100, f"the claim took {steps * 100} steps"
    # a worker of bulk.import takes them again, the oldest lease first
    again = broker.claim(ClaimOptions("w2", capabilities=("bulk.import",), limit=2))
    assert [c.task.payload["n"] for c in again] == [0, 1]
    assert [c.attempt for c in again] == [2, 2]


def test_one_claim_of_several_capabilities_takes_by_priority_then_age(
    broker: SqliteBroker,
) -> None:
    broker.submit_many(
        [
            TaskSpec("demo.a", {"n": 1}, priority=0),
            TaskSpec("demo.b", {"n": 2}, priority=5),
            TaskSpec("demo.c", {"n": 3}, priority=9),  # not claimed: another capability
            TaskSpec("demo.a", {"n": 4}, priority=5),
            TaskSpec("demo.b", {"n": 5}, priority=-2),
            TaskSpec("demo.a", {"n": 6}, priority=0),
        ]
    )
    options = ClaimOptions("w1", capabilities=("demo.a", "demo.b"), limit=3)
    first = [c.task.payload["n"] for c in broker.claim(options)]
    rest = [c.task.payload["n"] for c in broker.claim(options)]
    assert first == [2, 4, 1]
    assert rest == [6, 5]
    anyone = [c.task.payload["n"] for c in broker.claim(ClaimOptions("w2", limit=10))]
    assert anyone == [3]


def test_a_claim_of_any_capability_takes_by_priority_then_age(broker: SqliteBroker) -> None:
    broker.submit_many(
        [
            TaskSpec("z.last", {"n": 1}, priority=1),
            TaskSpec("a.first", {"n": 2}, priority=0),
            TaskSpec("m.middle", {"n": 3}, priority=1),
            TaskSpec("a.first", {"n": 4}, priority=3),
        ]
    )
    claims = broker.claim(ClaimOptions("w1", limit=10))
    assert [c.task.payload["n"] for c in claims] == [4, 1, 3, 2]
    assert broker.claim(ClaimOptions("w1", limit=10)) == []


def test_a_claim_of_very_many_capabilities_takes_the_same_order(broker: SqliteBroker) -> None:
    names = tuple(sorted(f"cap.n{i:03d}" for i in range(_UNION_MOST + 6)))
    broker.submit_many([TaskSpec(name, {"n": i}, priority=i % 3) for i, name in enumerate(names)])
    claims = broker.claim(ClaimOptions("w1", capabilities=names, limit=len(names)))
    expected = sorted(range(len(names)), key=lambda i: (-(i % 3), i))
    assert [c.task.payload["n"] for c in claims] == expected


def test_a_queue_file_from_an_earlier_crank_gets_the_new_indexes(tmp_path: Path) -> None:
    """A file written by an earlier crank: no ``backing_off`` column, the ready index
    of every capability in priority order, the lease index by expiry alone, and
    retries (one due, one not) in the ready index. Opened, it gets the column and
    the new indexes; the old ones are dropped; its tasks are claimed as before."""
    path = tmp_path / "q.db"
    first = SqliteBroker(path, retry_base_s=600, retry_max_s=600)
    first.submit_many([TaskSpec("demo.echo", {"n": n}) for n in range(3)])
    claims = first.claim(ClaimOptions("w1", capabilities=("demo.echo",), limit=2))
    for claim in claims:
        first.fail(claim, {"code": "DOWN", "message": "upstream down"}, retryable=True)
    first.close()
    old = sqlite3.connect(str(path), isolation_level=None)
    for index in ("tasks_queued", "tasks_backoff", "tasks_leased"):
        old.execute(f"DROP INDEX {index}")
    old.execute("ALTER TABLE tasks DROP COLUMN backing_off")
    old.execute(
        "CREATE INDEX tasks_ready ON tasks (priority DESC, visible_at) "
        "WHERE status IN ('pending', 'retrying')"
    )
    old.execute("CREATE INDEX tasks_leases ON tasks (visible_at) WHERE status = 'running'")
    due, later = (c.task.id for c in claims)
    old.execute("UPDATE tasks SET visible_at = 1.0 WHERE id = ?", (due,))  # its backoff ran out
    old.close()
    broker = SqliteBroker(path)
    try:
        names = {row[0] for row in broker._db.execute("SELECT name FROM sqlite_master")}
        assert {"tasks_queued", "tasks_backoff", "tasks_leased"} <= names
        assert not {"tasks_ready", "tasks_ready_by_capability", "tasks_leases"} & names
        options = ClaimOptions("w1", capabilities=("demo.echo",), limit=10)
        taken = [c.task.id for c in broker.claim(options)]
        assert taken[0] == due  # its visible_at is the oldest
        assert later not in taken and len(taken) == 2
        record = broker.get(later)
        assert record is not None and record.status == "retrying"
    finally:
        broker.close()


def backing_off(broker: SqliteBroker, capability: str, count: int) -> list[str]:
    """``count`` tasks of ``capability`` that failed once and wait for their retry
    (the broker's backoff is long: they stay waiting while the test runs)."""
    broker.submit_many([TaskSpec(capability, {"n": n}) for n in range(count)])
    options = ClaimOptions("w1", capabilities=(capability,), limit=count)
    failed = []
    for claim in broker.claim(options):
        status = broker.fail(claim, {"code": "DOWN", "message": "upstream down"}, retryable=True)
        assert status == "retrying"
        failed.append(claim.task.id)
    return failed


def test_tasks_backing_off_cost_a_claim_nothing(tmp_path: Path) -> None:
    """A downstream outage: every task of a capability failed and waits out its
    backoff. Those tasks sat in the claim's index, not yet visible, so every claim of
    that capability, and every "anything to claim?" read, stepped past all of them
    (20,000: 120,000 steps each); they now wait in an index of their own."""
    broker = SqliteBroker(tmp_path / "q.db", retry_base_s=600, retry_max_s=600)
    try:
        backing_off(broker, "demo.echo", BACKLOG)
        broker.submit_many([TaskSpec("demo.echo", {"n": -n}) for n in range(1, 4)])
        options = ClaimOptions("w1", capabilities=("demo.echo",), limit=8, visibility_timeout_s=60)
        claims_cheaply(broker, options, 3)
        with counted(broker._db) as count:
            assert not broker._claimable(time.time(), ("demo.echo",), " AND capability IN (?)")
        assert count[0] < BACKLOG / 100, f"the read took {count[0] * 100} steps"
        assert broker.stats().pending == {"demo.echo": BACKLOG}  # still counted as queued
    finally:
        broker.close()


def test_retries_whose_backoff_ran_out_are_claimed_by_priority_then_age(tmp_path: Path) -> None:
    broker = SqliteBroker(tmp_path / "q.db", retry_base_s=600, retry_max_s=600)
    try:
        broker.submit_many([TaskSpec("demo.echo", {"n": "low"}, priority=0)])
        broker.submit_many([TaskSpec("demo.echo", {"n": "high"}, priority=5)])
        broker.submit_many([TaskSpec("demo.echo", {"n": "waits"}, priority=9)])
        options = ClaimOptions("w1", capabilities=("demo.echo",), limit=3)
        ids = {}
        for claim in broker.claim(options):
            broker.fail(claim, {"code": "DOWN", "message": "upstream down"}, retryable=True)
            ids[claim.task.payload["n"]] = claim.task.id
        broker.submit_many(
            [
                TaskSpec("demo.echo", {"n": "new-mid"}, priority=3),
                TaskSpec("demo.echo", {"n": "new-low"}, priority=0),
            ]
        )
        # as if their backoff had passed, long before the new tasks came
        with broker._lock:
            broker._db.execute(
                "UPDATE tasks SET visible_at = 1.0 WHERE id IN (?, ?)", (ids["low"], ids["high"])
            )
        assert broker._claimable(time.time(), None, "")
        claims = broker.claim(ClaimOptions("w2", limit=10))
        assert [c.task.payload["n"] for c in claims] == ["high", "new-mid", "low", "new-low"]
        assert [c.attempt for c in claims] == [2, 1, 2, 1]
        record = broker.get(ids["waits"])
        assert record is not None and record.status == "retrying"
        assert broker.claim(ClaimOptions("w2", limit=10)) == []
    finally:
        broker.close()


def test_a_count_under_way_holds_up_no_writer(broker: SqliteBroker) -> None:
    """stats() reads on a connection of its own: while one runs (its lock held here),
    this process's submits, claims and acks go on (they shared one connection, and
    a server's submits waited for its stats)."""
    done: list[str] = []

    def write() -> None:
        broker.submit_many([TaskSpec("demo.echo", {"n": 1})])
        (claim,) = broker.claim(ClaimOptions("w1", capabilities=("demo.echo",)))
        broker.ack(claim, {"n": 1})
        done.append(claim.task.id)

    assert broker.stats().pending == {}  # the reading connection is open
    with broker._aside_lock:
        writer = threading.Thread(target=write, daemon=True)
        writer.start()
        writer.join(timeout=60)
        assert done, "a write waited for the count"
    record = broker.get(done[0])
    assert record is not None and record.status == "succeeded"
    assert broker.stats().pending == {}


def test_a_list_under_way_holds_up_no_writer(broker: SqliteBroker) -> None:
    """A list that few tasks match walks the table (23-34 ms with 200,000 queued) and
    ran on the connection this process's submits, claims and acks write through: a
    task list in the console held up the server's submits. Lists, like counts, read
    on a connection of their own; here one is stopped half-way while writes go on."""
    broker.submit_many([TaskSpec("bulk.import", {"n": n}) for n in range(BACKLOG)])
    broker.submit_many([TaskSpec("demo.echo", {"n": 0})])
    assert broker.stats().pending  # the reading connection is open
    assert broker._aside_db is not None
    under_way, go_on = threading.Event(), threading.Event()

    def pause() -> int:
        under_way.set()
        go_on.wait(timeout=60)
        return 0

    pages: list[TaskPage] = []
    broker._aside_db.set_progress_handler(pause, 1000)
    lister = threading.Thread(
        target=lambda: pages.append(broker.list_tasks(TaskQuery(capability="demo.echo"))),
        daemon=True,
    )
    lister.start()
    try:
        assert under_way.wait(timeout=60), "the list did not read on the reading connection"
        done: list[str] = []

        def write() -> None:
            broker.submit_many([TaskSpec("demo.echo", {"n": 1})])
            claims = broker.claim(ClaimOptions("w1", capabilities=("demo.echo",), limit=2))
            broker.ack_many([(claim, {"ok": True}) for claim in claims])
            done.extend(claim.task.id for claim in claims)

        writer = threading.Thread(target=write, daemon=True)
        writer.start()
        writer.join(timeout=60)
        assert len(done) == 2, "a write waited for the list"
    finally:
        go_on.set()
        lister.join(timeout=60)
        broker._aside_db.set_progress_handler(None, 1000)  # once its query is done
    (page,) = pages
    assert [task.capability for task in page.tasks] == ["demo.echo"]


def test_expired_results_are_purged_a_bounded_share_per_write(broker: SqliteBroker) -> None:
    """A purge of 200,000 results that expired together held the write lock for a
    second; now each write transaction that purges (a submit's, an ack's) deletes at
    most _BULK_MOST of them, and the next one goes on (not 30 s later) until none is
    left; then the purge rests again."""
    total = 2 * _BULK_MOST + 500
    broker.submit_many([TaskSpec("bulk.import", {"n": i}) for i in range(total)])
    options = ClaimOptions("w1", capabilities=("bulk.import",), limit=total)
    broker.ack_many([(claim, {"ok": True}) for claim in broker.claim(options)])

    def expire() -> None:  # as if result_ttl_s had passed for every result
        with broker._lock:
            broker._db.execute("UPDATE tasks SET expires_at = 1.0 WHERE status = 'succeeded'")

    def expired() -> int:
        with broker._lock:
            sql = "SELECT COUNT(*) FROM tasks WHERE expires_at < 2.0"
            return int(broker._db.execute(sql).fetchone()[0])

    expire()
    broker._last_purge = 0.0  # the purge is due
    left = [expired()]
    for n in range(3):
        broker.submit_many([TaskSpec("demo.echo", {"n": n})])
        left.append(expired())
    assert left == [total, total - _BULK_MOST, total - 2 * _BULK_MOST, 0]
    # the last purge found fewer than its most: the next is 30 s away
    done = broker.claim(ClaimOptions("w1", capabilities=("demo.echo",), limit=10))
    broker.ack_many([(claim, {"n": 0}) for claim in done])
    expire()
    broker.submit_many([TaskSpec("demo.echo", {"n": 9})])
    assert expired() == 3


def test_the_count_reads_the_queued_tasks_not_every_result(tmp_path: Path) -> None:
    """The stats read the two partial indexes that hold every queued task (ready, and
    waiting out a retry's backoff), not the table, where results are kept for a day."""
    broker = SqliteBroker(tmp_path / "q.db", retry_base_s=600, retry_max_s=600)
    try:
        broker.submit_many([TaskSpec("bulk.import", {"n": n}) for n in range(BACKLOG)])
        options = ClaimOptions("w1", capabilities=("bulk.import",), limit=BACKLOG)
        broker.ack_many([(claim, {"ok": True}) for claim in broker.claim(options)])
        backing_off(broker, "demo.echo", 2)
        broker.submit_many([TaskSpec("demo.echo", {"n": 9}, priority=3)])
        assert broker.stats().pending == {"demo.echo": 3}  # opens the reading connection
        assert broker._aside_db is not None
        with counted(broker._aside_db) as count:
            stats = broker.stats()
        assert count[0] < BACKLOG / 100, f"the count took {count[0] * 100} steps"
        assert stats.pending == {"demo.echo": 3}
        assert stats.pending_by_priority == {"demo.echo": {0: 2, 2: 1}}
        assert stats.running == 0
        assert stats.oldest_pending_age_s > 0
    finally:
        broker.close()


def test_the_oldest_pending_task_is_read_with_the_counts(tmp_path: Path) -> None:
    """The oldest ready task's age comes from the two indexes, in the pass that counts
    them (each holds visible_at, when a task became ready; the table's rows are not
    read, see above): a retry backing off is left out, the first task queued is in."""
    broker = SqliteBroker(tmp_path / "q.db", retry_base_s=600, retry_max_s=600)

    def age_of(task_id: str) -> tuple[float, float, float]:
        record = broker.get(task_id)
        assert record is not None
        before = time.time()
        age = broker.stats().oldest_pending_age_s
        return before - record.created_at, age, time.time() - record.created_at

    try:
        (first,) = backing_off(broker, "demo.a", 1)
        assert broker.stats().oldest_pending_age_s == 0.0  # backing off: not ready
        second, third = (
            r.id for r in broker.submit_many([TaskSpec("demo.b", {"n": n}) for n in (2, 3)])
        )
        low, age, high = age_of(second)  # queued
        assert low <= age <= high
        (claim,) = broker.claim(ClaimOptions("w1", capabilities=("demo.b",), limit=1))
        assert claim.task.id == second
        low, age, high = age_of(third)
        assert low <= age <= high
        assert broker.cancel(first) is not None
        low, age, high = age_of(third)
        assert low <= age <= high
    finally:
        broker.close()


def dead_letters(broker: SqliteBroker, capability: str, count: int) -> list[str]:
    broker.submit_many([TaskSpec(capability, {"n": n}) for n in range(count)])
    options = ClaimOptions("w1", capabilities=(capability,), limit=count)
    claims = broker.claim(options)
    for claim in claims:
        assert broker.fail(claim, {"code": "BUG", "message": "it broke"}, retryable=False) == "dead"
    return [claim.task.id for claim in claims]


def test_a_bulk_redrive_or_purge_changes_a_bounded_share_per_transaction(
    broker: SqliteBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A capability's dead letters were redriven (or purged) in one write transaction:
    100,000 held the write lock 0.9 s, every submit and claim waiting. Now at most
    _BULK_MOST per transaction; the dead letters of other capabilities stay."""
    total = 2 * _BULK_MOST + 7
    dead_letters(broker, "demo.echo", total)
    dead_letters(broker, "demo.other", 3)
    changed: list[int] = []
    apply = sqlite_broker._apply

    def counted_apply(*args: Any) -> int:
        changed.append(apply(*args))
        return changed[-1]

    monkeypatch.setattr(sqlite_broker, "_apply", counted_apply)
    assert broker.redrive_dead_letters("demo.echo") == total
    assert changed == [_BULK_MOST, _BULK_MOST, 7]
    stats = broker.stats()
    assert stats.dead == 3
    assert stats.pending == {"demo.echo": total}
    changed.clear()
    assert broker.purge_dead_letters("demo.other") == 3
    assert changed == [3]
    assert broker.stats().dead == 0


def test_a_bulk_redrive_takes_the_dead_letters_of_when_it_began(broker: SqliteBroker) -> None:
    """One that died after the redrive began (a redriven task that failed again at
    once, say) is not taken: a redrive of a poison capability ends."""
    old, new = dead_letters(broker, "demo.echo", 2)
    with broker._lock:  # as if it died again after the redrive below began
        broker._db.execute(
            "UPDATE tasks SET updated_at = ? WHERE id = ?", (time.time() + 3600, new)
        )
    assert broker.redrive_dead_letters("demo.echo") == 1
    record = broker.get(old)
    assert record is not None and record.status == "pending"
    record = broker.get(new)
    assert record is not None and record.status == "dead"
