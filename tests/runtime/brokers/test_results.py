"""Results are pushed: a waiter is woken by the notice of its task's end, on every backend.

Most tests turn the waiters' safety poll off (``SAFETY_POLL_S`` set to an hour), so a
waiter that returns was woken by a notice: had the notice not come, the test would
hang until pytest-timeout fails it.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import threading
import time
from typing import TYPE_CHECKING

import pytest

from crank.runtime.brokers import contract, open_broker
from crank.runtime.brokers.contract import Broker, ClaimOptions, Notice, TaskSpec
from crank.runtime.brokers.notices import ResultNotices

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from crank.runtime.brokers.contract import Claim

    from ..conftest import RedisServer


@pytest.fixture
def no_safety_poll(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(contract, "SAFETY_POLL_S", 3600.0)


def spec(n: int = 0, **kw: object) -> TaskSpec:
    return TaskSpec(capability="demo.echo", payload={"n": n}, **kw)  # type: ignore[arg-type]


def claim_one(broker: Broker, consumer: str = "w1") -> Claim:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        got = broker.claim(ClaimOptions(consumer, limit=1, block_s=0.2))
        if got:
            return got[0]
    raise AssertionError("no task to claim")


def test_wait_for_result_is_woken_by_the_ack(broker: Broker, no_safety_poll: None) -> None:
    record = broker.submit(spec(n=1))
    claim = claim_one(broker)
    waiting = threading.Event()
    answer: list[object] = []

    def wait() -> None:
        waiting.set()
        answer.append(broker.wait_for_result(record.id))

    thread = threading.Thread(target=wait)
    thread.start()
    waiting.wait()
    # the waiter may not have watched yet: either way it must end with the result
    broker.ack(claim, {"echo": 1})
    thread.join(timeout=60)
    assert not thread.is_alive()
    [done] = answer
    assert done is not None
    assert done.status == "succeeded"  # type: ignore[attr-defined]
    assert done.result == {"echo": 1}  # type: ignore[attr-defined]


def test_submit_watch_delivers_the_outcome_in_the_notice(
    broker: Broker, no_safety_poll: None
) -> None:
    [record] = broker.submit_many([spec(n=2)], watch=True)
    notices = broker.result_notices()
    assert notices is not None
    assert notices.watching(record.id)
    claim = claim_one(broker)
    broker.ack(claim, {"echo": 2})
    notice = notices.wait(record.id, 3600)
    notices.forget(record.id)
    assert notice == Notice(record.id, "succeeded", 1, '{"echo": 2}')
    finished = notice.finish(record)
    assert finished is not None
    assert (finished.status, finished.result, finished.attempts) == ("succeeded", {"echo": 2}, 1)
    assert not notices.watching(record.id)


def test_a_dead_letter_is_told_with_its_error(broker: Broker, no_safety_poll: None) -> None:
    [record] = broker.submit_many([spec(n=3, max_attempts=1)], watch=True)
    notices = broker.result_notices()
    assert notices is not None
    claim = claim_one(broker)
    assert broker.fail(claim, {"code": "BOOM", "message": "no"}, retryable=True) == "dead"
    notice = notices.wait(record.id, 3600)
    notices.forget(record.id)
    assert notice is not None
    finished = notice.finish(record)
    assert finished is not None
    assert finished.status == "dead"
    assert finished.error == {"code": "BOOM", "message": "no"}


def test_a_retry_is_not_an_end(broker: Broker, no_safety_poll: None) -> None:
    [record] = broker.submit_many([spec(n=4, max_attempts=2)], watch=True)
    notices = broker.result_notices()
    assert notices is not None
    first = claim_one(broker)
    assert broker.fail(first, {"code": "AGAIN", "message": "x"}, retryable=True) == "retrying"
    assert notices.wait(record.id, 0.05) is None
    second = claim_one(broker)
    broker.ack(second, {"ok": True})
    notice = notices.wait(record.id, 3600)
    notices.forget(record.id)
    assert notice is not None
    assert (notice.status, notice.attempts) == ("succeeded", 2)


def test_worker_lost_is_told(broker: Broker, no_safety_poll: None) -> None:
    [record] = broker.submit_many([spec(n=5, max_attempts=1)], watch=True)
    notices = broker.result_notices()
    assert notices is not None
    broker.claim(ClaimOptions("w1", limit=1, visibility_timeout_s=0.0))
    # the lease ran out and the only attempt is spent: the next claim makes it dead.
    # Workers sharing a queue use the same visibility timeout (Redis reclaims an entry
    # idle past the *claimer's* timeout: with the default 30 s this took 30 s).
    deadline = time.monotonic() + 60
    while notices.wait(record.id, 0.05) is None and time.monotonic() < deadline:
        broker.claim(ClaimOptions("w2", limit=1, visibility_timeout_s=0.0))
    notice = notices.wait(record.id, 0)
    notices.forget(record.id)
    assert notice is not None
    assert notice.status == "dead"
    finished = notice.finish(record)
    assert finished is not None and finished.error is not None
    assert finished.error["code"] == "WORKER_LOST"


def test_wait_times_out_with_the_task_as_it_stands(broker: Broker) -> None:
    record = broker.submit(spec(n=6))
    found = broker.wait_for_result(record.id, timeout_s=0.05)
    assert found is not None
    assert found.status == "pending"
    assert broker.wait_for_result("no-such-task", timeout_s=5) is None


def test_an_ended_task_is_returned_at_once(broker: Broker, no_safety_poll: None) -> None:
    record = broker.submit(spec(n=7))
    broker.ack(claim_one(broker), {"n": 7})
    done = broker.wait_for_result(record.id, timeout_s=3600)
    assert done is not None and done.result == {"n": 7}


def test_wait_for_result_async(broker: Broker, no_safety_poll: None) -> None:
    record = broker.submit(spec(n=8))
    claim = claim_one(broker)

    async def scenario() -> object:
        waiter = asyncio.create_task(broker.wait_for_result_async(record.id))
        notices = broker.result_notices()
        assert notices is not None
        while not notices.watching(record.id):  # the waiter watches before the ack
            await asyncio.sleep(0.001)
        await asyncio.to_thread(broker.ack, claim, {"async": True})
        return await waiter

    done = asyncio.run(scenario())
    assert done is not None
    assert done.result == {"async": True}  # type: ignore[attr-defined]


def test_idempotent_resubmit_watches_the_first_task(broker: Broker, no_safety_poll: None) -> None:
    first = broker.submit(spec(n=9, idempotency_key="k9"))
    [again] = broker.submit_many([spec(n=9, idempotency_key="k9")], watch=True)
    assert again.id == first.id
    notices = broker.result_notices()
    assert notices is not None
    broker.ack(claim_one(broker), {"n": 9})
    notice = notices.wait(first.id, 3600)
    notices.forget(first.id)
    assert notice is not None and notice.status == "succeeded"


def test_large_outcomes_are_not_carried(broker: Broker, no_safety_poll: None) -> None:
    [record] = broker.submit_many([spec(n=10)], watch=True)
    notices = broker.result_notices()
    assert notices is not None
    big = {"text": "x" * (contract.INLINE_LIMIT + 10)}
    broker.ack(claim_one(broker), big)
    notice = notices.wait(record.id, 3600)
    notices.forget(record.id)
    assert notice is not None
    assert notice.body is None
    assert notice.finish(record) is None  # the waiter reads the task instead
    assert broker.wait_for_result(record.id, timeout_s=5).result == big  # type: ignore[union-attr]


ACK_IN_ANOTHER_PROCESS = """
import sys, time
from crank.runtime.brokers import open_broker
from crank.runtime.brokers.contract import ClaimOptions
broker = open_broker(sys.argv[1])
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    got = broker.claim(ClaimOptions("other-process", limit=1, block_s=0.2))
    if got:
        broker.ack(got[0], {"from": "another process"})
        break
broker.close()
"""


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_a_notice_crosses_processes(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest, no_safety_poll: None
) -> None:
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'q.db'}"
    else:
        url = request.getfixturevalue("redis_server")
    broker = open_broker(url)
    try:
        [record] = broker.submit_many([spec(n=11)], watch=True)
        notices = broker.result_notices()
        assert notices is not None
        subprocess.run([sys.executable, "-c", ACK_IN_ANOTHER_PROCESS, url], check=True, timeout=120)
        notice = notices.wait(record.id, 3600)
        notices.forget(record.id)
        assert notice is not None
        assert notice.body == '{"from": "another process"}'
        assert notices.delivered >= 1
    finally:
        broker.close()


def test_redis_listener_survives_a_restart(
    redis_server_aof: RedisServer, no_safety_poll: None
) -> None:
    broker = open_broker(redis_server_aof.url)
    try:
        [record] = broker.submit_many([spec(n=12)], watch=True)
        notices = broker.result_notices()
        assert notices is not None
        redis_server_aof.restart()
        # the listener subscribes again by itself; wait until it did (it wakes every
        # waiter once it is back), then end the task: the notice must come through
        woken = notices.wait(record.id, 3600)
        assert woken is None  # a wake-up to look at the broker, not a notice
        claim = claim_one(broker)
        broker.ack(claim, {"after": "restart"})
        notice = notices.wait(record.id, 3600)
        notices.forget(record.id)
        assert notice is not None and notice.status == "succeeded"
    finally:
        broker.close()


@contextlib.contextmanager
def _claiming(worker: Broker, producer: Broker) -> Iterator[list[Claim]]:
    """A claim of ``worker`` waiting up to an hour on a thread, from the moment its wake
    address is listed (a producer can read it); joined when the block ends."""
    got: list[Claim] = []
    waiting = threading.Event()

    def claim() -> None:
        waiting.set()
        got.extend(worker.claim(ClaimOptions("w1", limit=1, block_s=3600)))

    thread = threading.Thread(target=claim, daemon=True)
    thread.start()
    waiting.wait()
    deadline = time.monotonic() + 60
    while not producer._read("SELECT address FROM wake_listeners"):  # type: ignore[attr-defined]
        assert time.monotonic() < deadline, "the waiting worker was never listed"
        time.sleep(0.01)
    yield got
    thread.join(timeout=60)
    assert not thread.is_alive(), "the claim did not end"


def test_sqlite_worker_is_woken_by_a_submit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from crank.runtime.brokers import sqlite as sqlite_module

    # only a wake-up can end the worker's wait now
    monkeypatch.setattr(sqlite_module, "_WAKE_FALLBACK_S", 3600.0)
    monkeypatch.setattr(sqlite_module, "_RESCAN_S", 3600.0)
    url = f"sqlite:///{tmp_path / 'q.db'}"
    worker, producer = open_broker(url), open_broker(url)
    try:
        with _claiming(worker, producer) as got:
            producer._wake_read_at = -1e9  # type: ignore[attr-defined] # it reads the list anew
            record = producer.submit(spec(n=13))
        assert [c.task.id for c in got] == [record.id]
    finally:
        worker.close()
        producer.close()


def test_a_worker_listed_anew_finds_a_submit_its_producer_did_not_wake_it_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from crank.runtime.brokers import sqlite as sqlite_module

    # no rescan: only the worker's own look at the database can end its wait
    monkeypatch.setattr(sqlite_module, "_RESCAN_S", 3600.0)
    # a producer slow to re-read the addresses (however busy the machine is)
    monkeypatch.setattr(sqlite_module, "_WAKE_REFRESH_S", 3600.0)
    url = f"sqlite:///{tmp_path / 'q.db'}"
    worker, producer = open_broker(url), open_broker(url)
    try:
        # the producer read the addresses to wake before the worker was listed, and
        # keeps that list for _WAKE_REFRESH_S: its submit wakes nobody
        producer._wake_workers()  # type: ignore[attr-defined]
        assert producer._wake_addresses == []  # type: ignore[attr-defined]
        with _claiming(worker, producer) as got:  # listed: from now on it is the window
            record = producer.submit(spec(n=14))
            assert producer._wake_addresses == []  # type: ignore[attr-defined]
        assert [c.task.id for c in got] == [record.id]
    finally:
        worker.close()
        producer.close()


def test_notice_wire_format_round_trips() -> None:
    notice = Notice("abc", "failed", 2, '{"code": "X"}')
    assert Notice.decode(notice.encode()) == notice
    assert Notice.decode(b"abc succeeded 1") == Notice("abc", "succeeded", 1, None)
    assert Notice.decode(b"") is None
    assert Notice.decode(b"abc running 1") is None


def test_wake_all_releases_waiters_without_a_notice() -> None:
    notices = ResultNotices()
    notices.expect(["t1"])
    released: list[object] = []
    thread = threading.Thread(target=lambda: released.append(notices.wait("t1", 3600)))
    thread.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        notices.wake_all()
        thread.join(timeout=0.01)
        if not thread.is_alive():
            break
    assert released == [None]
    notices.forget("t1")
    assert len(notices) == 0


def test_a_wake_before_the_wait_is_not_lost() -> None:
    # the listener reconnected (wake_all) between a caller's expect and its wait: the
    # wait must return at once to read the broker, not sleep through the lost notice
    notices = ResultNotices()
    notices.expect(["t1", "t2"])
    notices.wake_all()
    released: list[object] = []
    thread = threading.Thread(target=lambda: released.append(notices.wait("t1", 3600)))
    thread.start()
    thread.join(timeout=120)
    assert not thread.is_alive()
    assert released == [None]
    assert asyncio.run(asyncio.wait_for(notices.wait_async("t2", 3600), 120)) is None
    # told once: a later wait waits for the notice again, and gets it
    notices.deliver([Notice("t1", "succeeded", 1, None)])
    assert notices.wait("t1", 3600) == Notice("t1", "succeeded", 1, None)


def test_a_client_fault_is_told_as_failed(broker: Broker, no_safety_poll: None) -> None:
    [record] = broker.submit_many([spec(n=14)], watch=True)
    notices = broker.result_notices()
    assert notices is not None
    claim = claim_one(broker)
    error = {"code": "INVALID_INPUT", "message": "bad"}
    assert broker.fail(claim, error, retryable=False, client_fault=True) == "failed"
    notice = notices.wait(record.id, 3600)
    notices.forget(record.id)
    assert notice is not None
    assert (notice.status, notice.attempts) == ("failed", 1)
    finished = notice.finish(record)
    assert finished is not None and finished.error == error
