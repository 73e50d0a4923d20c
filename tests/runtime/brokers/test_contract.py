"""The delivery contract, run against every backend (memory, SQLite, Redis Streams)."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

import pytest

from crank.runtime.brokers import open_broker
from crank.runtime.brokers.contract import (
    Broker,
    ClaimOptions,
    IdempotencyKeyReused,
    TaskRecord,
    TaskSpec,
    band_priorities,
    priority_band,
    scoped_idempotency_key,
    valid_idempotency_key,
)

if TYPE_CHECKING:
    from crank.runtime.brokers.contract import Claim


def spec(cap: str = "demo.echo", n: int = 0, **kw: object) -> TaskSpec:
    return TaskSpec(capability=cap, payload={"n": n}, **kw)  # type: ignore[arg-type]


def claim_until(
    broker: Broker,
    want: int,
    *,
    timeout_s: float = 30.0,
    consumer: str = "w1",
    visibility_timeout_s: float = 30.0,
) -> list[Claim]:
    """Claim until ``want`` tasks came or ``timeout_s`` passed; always tries at least once.

    A short ``timeout_s`` is for asserting that nothing (more) comes.
    """
    got: list[Claim] = []
    deadline = time.monotonic() + timeout_s
    while True:
        options = ClaimOptions(
            consumer,
            limit=want - len(got),
            block_s=0.1,
            visibility_timeout_s=visibility_timeout_s,
        )
        got += broker.claim(options)
        if len(got) >= want or time.monotonic() >= deadline:
            return got


#: Clocks (time.time in the brokers, the Redis server's milliseconds, time.monotonic
#: here) may round a timeout's end by a few milliseconds either way.
CLOCK_SLACK_S = 0.01


def test_protocol_is_implemented(broker: Broker) -> None:
    assert isinstance(broker, Broker)
    assert broker.ping() is True


def test_submit_claim_ack_keeps_result(broker: Broker) -> None:
    record = broker.submit(spec(n=7, meta={"request_id": "r1"}, timeout_s=5.0))
    assert record.status == "pending"
    assert broker.get(record.id) is not None
    [claim] = broker.claim(ClaimOptions("w1", limit=10))
    assert claim.task.id == record.id
    assert claim.task.payload == {"n": 7}
    assert claim.task.meta == {"request_id": "r1"}
    assert claim.task.timeout_s == 5.0
    assert claim.attempt == 1
    assert broker.claim(ClaimOptions("w2", limit=10)) == []
    broker.ack(claim, {"echo": 7})
    done = broker.get(record.id)
    assert done is not None
    assert done.status == "succeeded"
    assert done.result == {"echo": 7}
    assert done.done
    assert broker.claim(ClaimOptions("w2", limit=10)) == []


def test_batch_submit_claim_ack(broker: Broker) -> None:
    records = broker.submit_many([spec(n=i) for i in range(50)])
    assert len({r.id for r in records}) == 50
    claims = broker.claim(ClaimOptions("w1", limit=30))
    assert len(claims) == 30
    assert [c.task.payload["n"] for c in claims] == list(range(30))
    claims += broker.claim(ClaimOptions("w1", limit=30))
    assert len(claims) == 50
    broker.ack_many([(c, {"n": c.task.payload["n"]}) for c in claims])
    results = [broker.get(r.id) for r in records]
    assert all(r is not None and r.status == "succeeded" for r in results)
    assert [r.result["n"] for r in results if r is not None] == list(range(50))


def test_begin_ack_and_claim_acks_one_batch_and_claims_the_next(broker: Broker) -> None:
    records = broker.submit_many([spec(n=i) for i in range(4)])
    first = broker.claim(ClaimOptions("w1", limit=2))
    pending = broker.begin_ack_and_claim(
        [(c, {"n": c.task.payload["n"]}) for c in first], ClaimOptions("w1", limit=2)
    )
    second = pending.result()
    assert [c.task.payload["n"] for c in first + second] == [0, 1, 2, 3]
    assert all(c.attempt == 1 for c in second)
    done = [broker.get(r.id) for r in records[:2]]
    assert [(d.status, d.result) for d in done if d is not None] == [
        ("succeeded", {"n": 0}),
        ("succeeded", {"n": 1}),
    ]
    assert (
        broker.begin_ack_and_claim(
            [(c, None) for c in second], ClaimOptions("w1", limit=2)
        ).result()
        == []
    )
    assert all((r := broker.get(c.task.id)) is not None and r.done for c in second)


def test_begin_ack_and_claim_refuses_a_result_that_is_not_json_before_sending(
    broker: Broker,
) -> None:
    broker.submit_many([spec(n=0), spec(n=1)])
    [claim] = broker.claim(ClaimOptions("w1"))
    with pytest.raises((TypeError, ValueError)):
        broker.begin_ack_and_claim([(claim, {"bad": {1, 2}})], ClaimOptions("w1")).result()
    still = broker.get(claim.task.id)
    assert still is not None and still.status == "running"
    # nothing was sent: the other task is still there for the next claim
    assert [c.task.payload["n"] for c in broker.claim(ClaimOptions("w1"))] == [1]


def test_higher_priority_first_then_oldest(broker: Broker) -> None:
    broker.submit(spec(n=1, priority=0))
    broker.submit(spec(n=2, priority=5))
    broker.submit(spec(n=3, priority=0))
    broker.submit(spec("demo.other", n=4, priority=9))
    order = [c.task.payload["n"] for c in claim_until(broker, 4)]
    assert order == [4, 2, 1, 3]


def test_capability_filter(broker: Broker) -> None:
    broker.submit(spec("demo.a", n=1))
    broker.submit(spec("demo.b", n=2))
    claims = broker.claim(ClaimOptions("w1", capabilities=("demo.b",), limit=10))
    assert [c.task.capability for c in claims] == ["demo.b"]
    assert broker.claim(ClaimOptions("w1", capabilities=(), limit=10)) == []


def test_idempotency_key_returns_first_task_of_the_same_request(broker: Broker) -> None:
    first = broker.submit(spec(n=1, idempotency_key="order-42", meta={"request_id": "r1"}))
    retried = broker.submit(spec(n=1, idempotency_key="order-42", meta={"request_id": "r2"}))
    assert retried.id == first.id
    assert retried.meta == {"request_id": "r1"}
    batch = broker.submit_many([spec(n=3, idempotency_key="k2"), spec(n=3, idempotency_key="k2")])
    assert isinstance(batch[0], TaskRecord)
    assert isinstance(batch[1], TaskRecord)
    assert batch[0].id == batch[1].id
    assert len(claim_until(broker, 3, timeout_s=0.5)) == 2


def test_idempotency_key_with_another_input_or_capability_is_refused(broker: Broker) -> None:
    first = broker.submit(spec(n=1, idempotency_key="order-42"))
    with pytest.raises(IdempotencyKeyReused) as refused:
        broker.submit(spec(n=2, idempotency_key="order-42"))
    assert first.id not in refused.value.message
    with pytest.raises(IdempotencyKeyReused):
        broker.submit(spec("demo.other", n=1, idempotency_key="order-42"))
    # in a batch, only the reused key is refused; the others are queued
    batch = broker.submit_many(
        [spec(n=5, idempotency_key="order-42"), spec(n=6), spec(n=1, idempotency_key="order-42")]
    )
    assert isinstance(batch[0], IdempotencyKeyReused)
    assert isinstance(batch[1], TaskRecord)
    assert isinstance(batch[2], TaskRecord)
    assert batch[2].id == first.id
    claims = claim_until(broker, 3, timeout_s=0.5)
    assert sorted(c.task.payload["n"] for c in claims) == [1, 6]


def test_scoped_keys_of_two_callers_never_meet(broker: Broker) -> None:
    alice = broker.submit(spec(n=1, idempotency_key=scoped_idempotency_key("alice", "k")))
    bob = broker.submit(spec(n=1, idempotency_key=scoped_idempotency_key("bob", "k")))
    anonymous = broker.submit(spec(n=2, idempotency_key=scoped_idempotency_key(None, "k")))
    assert len({alice.id, bob.id, anonymous.id}) == 3
    again = broker.submit(spec(n=1, idempotency_key=scoped_idempotency_key("bob", "k")))
    assert again.id == bob.id
    # no scope passes for another, whatever its characters
    assert scoped_idempotency_key("a:b", "c") != scoped_idempotency_key("a", "b:c")
    assert scoped_idempotency_key("a%3Ab", "c") != scoped_idempotency_key("a:b", "c")


def test_idempotency_under_concurrency(broker_url: str) -> None:
    ids: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(8)

    def submit() -> None:
        own = open_broker(broker_url) if not broker_url.startswith("memory") else shared
        barrier.wait()
        record = own.submit(spec(n=0, idempotency_key="same"))
        with lock:
            ids.append(record.id)
        if own is not shared:
            own.close()

    shared = open_broker(broker_url)
    threads = [threading.Thread(target=submit) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(ids) == 8
    assert len(set(ids)) == 1
    assert len(shared.claim(ClaimOptions("w1", limit=10))) == 1
    shared.close()


def test_visibility_timeout_redelivers(broker: Broker) -> None:
    record = broker.submit(spec(n=1))
    claimed_at = time.monotonic()
    [first] = broker.claim(ClaimOptions("w1", limit=1, visibility_timeout_s=0.2))
    # delivered again once the timeout has run out, and never before it
    [again] = claim_until(broker, 1, consumer="w2", visibility_timeout_s=0.2)
    assert time.monotonic() - claimed_at >= 0.2 - CLOCK_SLACK_S
    assert again.task.id == record.id
    assert again.attempt == 2
    assert broker.extend(first, 5.0) is False  # lost to the redelivery
    broker.ack(again, {"ok": True})
    got = broker.get(record.id)
    assert got is not None
    assert got.status == "succeeded"
    assert got.attempts == 2


@pytest.mark.slow
def test_extend_keeps_a_long_task_invisible(broker: Broker) -> None:
    timeout_s = 1.0
    thief = ClaimOptions("w2", limit=1, visibility_timeout_s=timeout_s)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        broker.submit(spec(n=1))
        [claim] = claim_until(broker, 1, visibility_timeout_s=timeout_s)
        claimed_at = time.monotonic()
        held = True
        # extend every quarter timeout until well past the first one
        while held and time.monotonic() - claimed_at < timeout_s * 1.5:
            time.sleep(timeout_s / 4)
            extended_at = time.monotonic()
            assert broker.extend_many([claim], timeout_s) == [True]
            stolen = broker.claim(thief)
            if stolen:
                # only a stall of this process for a whole timeout may let it go: start over
                assert time.monotonic() - extended_at >= timeout_s - CLOCK_SLACK_S
                broker.ack(stolen[0], {})
                held = False
        if held:  # invisible past its first timeout only because of the extensions
            broker.ack(claim, {})
            return
    pytest.fail("every round stalled for a whole visibility timeout")


def test_retryable_failure_backs_off_then_dead_letters(broker: Broker) -> None:
    record = broker.submit(spec(n=1, max_attempts=3))
    statuses = []
    for attempt in (1, 2, 3):
        [claim] = claim_until(broker, 1)
        assert claim.attempt == attempt
        error = {"code": "FLAKY", "message": f"try {attempt}", "type": "CapabilityError"}
        statuses.append(broker.fail(claim, error, retryable=True))
    assert statuses == ["retrying", "retrying", "dead"]
    dead = broker.get(record.id)
    assert dead is not None
    assert dead.status == "dead"
    assert dead.attempts == 3
    assert dead.error == {"code": "FLAKY", "message": "try 3", "type": "CapabilityError"}
    assert [d.id for d in broker.dead_letters()] == [record.id]
    assert broker.stats().dead == 1
    assert claim_until(broker, 1, timeout_s=0.3) == []


def test_non_retryable_failure_goes_straight_to_dead_letters(broker: Broker) -> None:
    record = broker.submit(spec(n=1, max_attempts=5))
    [claim] = broker.claim(ClaimOptions("w1", limit=1))
    status = broker.fail(claim, {"code": "BAD", "message": "no", "type": "X"}, retryable=False)
    assert status == "dead"
    got = broker.get(record.id)
    assert got is not None
    assert (got.status, got.attempts) == ("dead", 1)
    assert broker.dead_letters()[0].error == {"code": "BAD", "message": "no", "type": "X"}


def test_client_fault_fails_the_task_without_a_dead_letter(broker: Broker) -> None:
    record = broker.submit(spec(n=1, max_attempts=5))
    [claim] = broker.claim(ClaimOptions("w1", limit=1))
    error = {"code": "INVALID_INPUT", "message": "no words", "type": "CapabilityError"}
    # client_fault wins over retryable: retrying the same input cannot help
    assert broker.fail(claim, error, retryable=True, client_fault=True) == "failed"
    got = broker.get(record.id)
    assert got is not None
    assert (got.status, got.attempts, got.error) == ("failed", 1, error)
    assert got.done
    assert broker.dead_letters() == []
    assert broker.stats().dead == 0
    assert claim_until(broker, 1, timeout_s=0.3) == []
    # a late ack of the same claim does not turn it into a success
    broker.ack(claim, {"late": True})
    after = broker.get(record.id)
    assert after is not None
    assert after.status == "failed"


def test_stale_fail_does_not_override_redelivery(broker: Broker) -> None:
    broker.submit(spec(n=1))
    [first] = broker.claim(ClaimOptions("w1", limit=1, visibility_timeout_s=0.2))
    [second] = claim_until(broker, 1, consumer="w2", visibility_timeout_s=0.2)
    assert (
        broker.fail(first, {"code": "X", "message": "", "type": "X"}, retryable=False) == "running"
    )
    broker.ack(second, {"ok": 1})
    got = broker.get(second.task.id)
    assert got is not None
    assert got.status == "succeeded"


def test_release_gives_tasks_back_without_counting_attempts(broker: Broker) -> None:
    broker.submit_many([spec(n=i) for i in range(3)])
    claims = broker.claim(ClaimOptions("w1", limit=3, visibility_timeout_s=30))
    broker.release(claims[1:])
    again = broker.claim(ClaimOptions("w2", limit=5, visibility_timeout_s=30))
    assert sorted(c.task.payload["n"] for c in again) == [1, 2]
    assert all(c.attempt == 1 for c in again)


def test_a_task_given_back_behind_many_in_flight_is_the_next_claims_first(
    broker: Broker,
) -> None:
    # Redis found given-back entries by scanning the pending entries from their start,
    # a few dozen per claim: one behind a hundred in flight waited for those to end.
    broker.submit_many([spec(n=i) for i in range(102)])
    held = broker.claim(ClaimOptions("w1", limit=101, visibility_timeout_s=30))
    assert len(held) == 101
    broker.release([held[-1]])
    stats = broker.stats()
    assert stats.pending == {"demo.echo": 2}  # given back: waiting, not running
    assert stats.running == 100
    [first] = broker.claim(ClaimOptions("w2", limit=1, visibility_timeout_s=30))
    assert first.task.payload["n"] == 100  # in line before the one never claimed
    [then] = broker.claim(ClaimOptions("w2", limit=1, visibility_timeout_s=30))
    assert then.task.payload["n"] == 101
    assert broker.claim(ClaimOptions("w3", limit=10, visibility_timeout_s=30)) == []
    assert broker.stats().running == 102


def test_recover_makes_a_dead_consumers_tasks_deliverable_now(broker: Broker) -> None:
    broker.submit_many([spec(n=i) for i in range(4)])
    taken = broker.claim(ClaimOptions("dead-worker", limit=3, visibility_timeout_s=60))
    assert len(taken) == 3
    assert broker.recover("dead-worker") == 3
    assert broker.recover("dead-worker") in (0, 3)  # idempotent enough: nothing is lost
    again = broker.claim(ClaimOptions("w1", limit=4))  # at once: not after the visibility timeout
    assert sorted(c.task.payload["n"] for c in again) == [0, 1, 2, 3]
    by_n = {c.task.payload["n"]: c.attempt for c in again}
    assert by_n[3] == 1
    assert {by_n[c.task.payload["n"]] for c in taken} == {2}


def test_task_whose_worker_keeps_dying_ends_in_dead_letters(broker: Broker) -> None:
    record = broker.submit(spec(n=1, max_attempts=2))
    for _ in range(2):
        claim_until(broker, 1)
        broker.recover("w1")
    assert claim_until(broker, 1, timeout_s=0.3) == []
    got = broker.get(record.id)
    assert got is not None
    assert got.status == "dead"
    assert got.error is not None
    assert got.error["code"] == "WORKER_LOST"


def test_the_tasks_a_claim_ends_are_handed_to_the_claimer(broker: Broker) -> None:
    """A task delivered more than max_attempts times ends dead (WORKER_LOST) inside a
    claim, a cancelled one whose worker died ends cancelled there: no handler ran either
    to its end, so the process that claimed is told, to count them."""
    assert broker.ended_by_claims() == []
    [lost] = broker.submit_many([spec("demo.a", n=1, max_attempts=1)])
    [stopped] = broker.submit_many([spec("demo.b", n=2)])
    held = claim_until(broker, 2, visibility_timeout_s=0.01)
    assert {c.task.id for c in held} == {lost.id, stopped.id}
    cancellation = broker.cancel(stopped.id)
    assert cancellation is not None and cancellation.outcome == "stopping"
    # the leases ran out (their worker died): a later claim ends both (on Redis, one
    # that takes entries idle longer than its own visibility timeout)
    told: list[tuple[str, str]] = []
    deadline = time.monotonic() + 30

    def status(task_id: str) -> str | None:
        record = broker.get(task_id)
        return None if record is None else record.status

    while (status(lost.id), status(stopped.id)) != ("dead", "cancelled"):
        assert time.monotonic() < deadline, "no claim ended the tasks"
        options = ClaimOptions("w2", capabilities=("demo.a", "demo.b"), visibility_timeout_s=0.01)
        assert broker.claim(options) == []
        told += broker.ended_by_claims()
    ended = broker.get(lost.id)
    assert ended is not None and ended.error is not None
    assert ended.error["code"] == "WORKER_LOST"
    told += broker.ended_by_claims()
    assert sorted(told) == [("demo.a", "dead"), ("demo.b", "cancelled")]
    assert broker.ended_by_claims() == []  # handed over once


def test_stats(broker: Broker) -> None:
    assert broker.stats().pending == {}
    broker.submit_many([spec("demo.a", n=i) for i in range(3)] + [spec("demo.b")])
    time.sleep(0.02)
    claims = broker.claim(ClaimOptions("w1", capabilities=("demo.a",), limit=1))
    stats = broker.stats()
    assert stats.pending == {"demo.a": 2, "demo.b": 1}
    assert stats.running == 1
    assert stats.dead == 0
    assert 0.0 < stats.oldest_pending_age_s < 60
    broker.ack_many([(c, {}) for c in claims])
    assert broker.stats().running == 0


def test_stats_count_retries_waiting_out_their_backoff_as_pending(broker_url: str) -> None:
    """Pending is every queued task that is not running, a retry waiting out its
    backoff included: the admission bound and /v1/status count them on every backend."""
    slow = broker_url.replace(
        "retry_base_s=0.01&retry_max_s=0.05", "retry_base_s=600&retry_max_s=600"
    )
    broker = open_broker(slow)
    try:
        broker.submit_many([spec("demo.a", n=i) for i in range(3)])
        claims = broker.claim(ClaimOptions("w1", capabilities=("demo.a",), limit=2))
        for claim in claims:
            assert broker.fail(claim, {"code": "DOWN", "message": "down"}, retryable=True) == (
                "retrying"
            )
        stats = broker.stats()
        assert stats.pending == {"demo.a": 3}
        assert stats.backing_off == {"demo.a": 2}
        assert stats.ready() == {"demo.a": 1}
        assert stats.running == 0
        assert len(broker.claim(ClaimOptions("w1", capabilities=("demo.a",), limit=5))) == 1
        stats = broker.stats()
        assert stats.pending == {"demo.a": 2}  # the one never tried is running
        assert stats.ready() == {}
    finally:
        broker.close()


def test_a_retry_whose_backoff_is_over_counts_as_ready(broker: Broker) -> None:
    """Backing off is only until the retry is due (here within 50 ms): then it is work
    for a worker again, whether or not a claim has looked at it since."""
    broker.submit_many([spec("demo.a", n=1)])
    (claim,) = broker.claim(ClaimOptions("w1", capabilities=("demo.a",), limit=1))
    assert broker.fail(claim, {"code": "DOWN", "message": "down"}, retryable=True) == "retrying"
    deadline = time.monotonic() + 30
    while (stats := broker.stats()).backing_off:
        assert time.monotonic() < deadline, "the retry never came due"
        time.sleep(0.01)
    assert stats.pending == {"demo.a": 1}
    assert stats.ready() == {"demo.a": 1}


def wait_for_clock(past: float, by_s: float) -> None:
    """Until this process's clock reads ``by_s`` past ``past`` (a state of the clock, so
    the ages compared below differ by at least that much)."""
    while time.time() < past + by_s:
        time.sleep(by_s / 10)


def test_the_oldest_pending_age_leaves_out_retries_backing_off(broker_url: str) -> None:
    """The oldest pending age is how long ready work has waited for a worker: a retry
    waiting out its backoff is not such work (a downstream outage must not read as
    workers falling behind), and every backend measures it the same way."""
    slow = broker_url.replace(
        "retry_base_s=0.01&retry_max_s=0.05", "retry_base_s=600&retry_max_s=600"
    )
    broker = open_broker(slow)
    try:
        (first,) = broker.submit_many([spec("demo.a", n=1)])
        (claim,) = broker.claim(ClaimOptions("w1", capabilities=("demo.a",), limit=1))
        assert broker.fail(claim, {"code": "DOWN", "message": "down"}, retryable=True) == (
            "retrying"
        )
        wait_for_clock(first.created_at, 0.5)
        assert broker.stats().oldest_pending_age_s == 0.0  # nothing ready
        (second,) = broker.submit_many([spec("demo.b", n=2)])
        stats = broker.stats()
        after = time.time()
        assert stats.backing_off == {"demo.a": 1}
        # the task submitted last, not the retry submitted half a second before it
        # (10 ms: Redis dates a stream entry in whole milliseconds)
        assert 0.0 <= stats.oldest_pending_age_s <= after - second.created_at + 0.01
    finally:
        broker.close()


def test_a_due_retry_has_waited_since_its_backoff_ended(broker: Broker) -> None:
    """Once its backoff is over, a retry is ready work, waiting since then (whether a
    claim has moved it yet or not), not since its first submission."""
    (record,) = broker.submit_many([spec("demo.a", n=1)])
    (claim,) = broker.claim(ClaimOptions("w1", capabilities=("demo.a",), limit=1))
    wait_for_clock(record.created_at, 0.5)
    failed_at = time.time()
    assert broker.fail(claim, {"code": "DOWN", "message": "down"}, retryable=True) == "retrying"
    deadline = time.monotonic() + 30
    while broker.stats().backing_off:
        assert time.monotonic() < deadline, "the retry never came due"
        time.sleep(0.01)
    age = broker.stats().oldest_pending_age_s
    after = time.time()
    assert 0.0 < age <= after - failed_at  # < after - created_at - 0.5


def test_blocking_claim_wakes_on_submit(broker: Broker) -> None:
    claiming = threading.Event()

    def later() -> None:
        claiming.wait()
        # Nothing shows when the claim below starts to block; a moment's pause makes
        # that the usual order. The assertion holds in either order: the claim blocks
        # for up to a minute and returns as soon as the task is there.
        time.sleep(0.05)
        broker.submit(spec(n=1))

    thread = threading.Thread(target=later)
    thread.start()
    claiming.set()
    claims = broker.claim(ClaimOptions("w1", limit=5, block_s=60.0))
    thread.join()
    assert [c.task.payload["n"] for c in claims] == [1]


def test_blocking_claim_returns_empty_when_nothing_comes(broker: Broker) -> None:
    assert broker.claim(ClaimOptions("w1", limit=5, block_s=0.2)) == []
    broker.submit(spec("demo.other"))
    assert broker.claim(ClaimOptions("w1", capabilities=("demo.echo",), limit=5, block_s=0.2)) == []


@pytest.mark.slow
def test_results_expire_after_their_ttl(broker_url: str) -> None:
    broker = open_broker(broker_url, result_ttl_s=1.0)
    try:
        record = broker.submit(spec(n=1, idempotency_key="ttl"))
        [claim] = broker.claim(ClaimOptions("w1"))
        acked_at = time.monotonic()
        broker.ack(claim, {"ok": True})
        assert broker.get(record.id) is not None
        deadline = acked_at + 60
        while broker.get(record.id) is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert broker.get(record.id) is None
        assert time.monotonic() - acked_at >= 1.0 - CLOCK_SLACK_S  # not before its TTL
        # the key expired with the result: the same key makes a new task
        assert broker.submit(spec(n=2, idempotency_key="ttl")).id != record.id
    finally:
        broker.close()


@pytest.mark.slow
def test_failed_tasks_expire_like_results(broker_url: str) -> None:
    broker = open_broker(broker_url, result_ttl_s=1.0)
    try:
        record = broker.submit(spec(n=1, idempotency_key="bad"))
        [claim] = broker.claim(ClaimOptions("w1"))
        failed_at = time.monotonic()
        error = {"code": "INVALID_INPUT", "message": "no", "type": "X"}
        assert broker.fail(claim, error, retryable=False, client_fault=True) == "failed"
        deadline = failed_at + 60
        while broker.get(record.id) is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert broker.get(record.id) is None
        assert time.monotonic() - failed_at >= 1.0 - CLOCK_SLACK_S
        assert broker.submit(spec(n=2, idempotency_key="bad")).id != record.id
    finally:
        broker.close()


def test_dead_tasks_are_kept_in_dead_letters_in_newest_first_order(broker: Broker) -> None:
    ids = []
    for i in range(3):
        ids.append(broker.submit(spec(n=i)).id)
        [claim] = broker.claim(ClaimOptions("w1"))
        broker.fail(claim, {"code": "E", "message": str(i), "type": "E"}, retryable=False)
        time.sleep(0.01)
    assert [d.id for d in broker.dead_letters()] == ids[::-1]
    assert [d.id for d in broker.dead_letters(limit=2)] == ids[:0:-1]


def test_ack_and_claim_acks_then_claims_in_one_call(broker: Broker) -> None:
    records = broker.submit_many([spec(n=i) for i in range(4)])
    first = broker.claim(ClaimOptions("w1", limit=2))
    following = broker.ack_and_claim(
        [(c, {"n": c.task.payload["n"]}) for c in first], ClaimOptions("w1", limit=5)
    )
    assert sorted(c.task.payload["n"] for c in following) == [2, 3]
    done = [broker.get(r.id) for r in records[:2]]
    assert [(d.status, d.result) for d in done if d] == [
        ("succeeded", {"n": 0}),
        ("succeeded", {"n": 1}),
    ]
    assert (
        broker.ack_and_claim(
            [(c, {}) for c in following], ClaimOptions("w1", limit=5, block_s=0.05)
        )
        == []
    )
    assert broker.stats().running == 0


def test_stats_count_pending_tasks_per_priority_band(broker: Broker) -> None:
    broker.submit_many(
        [
            spec("demo.a", n=1),
            spec("demo.a", n=2, priority=5),
            spec("demo.a", n=3, priority=6),
            spec("demo.b", n=4, priority=-1),
            spec("demo.b", n=5, priority=1000),
        ]
    )
    [claim] = broker.claim(ClaimOptions("w1", capabilities=("demo.b",), limit=1))
    assert claim.task.priority == 1000  # the highest first; it is running now, not pending
    stats = broker.stats()
    assert stats.pending == {"demo.a": 3, "demo.b": 1}
    assert stats.pending_by_priority == {"demo.a": {0: 1, 3: 2}, "demo.b": {-1: 1}}
    # a task waiting to be retried is pending in its band too
    broker.fail(claim, {"code": "BOOM", "message": "x"}, retryable=True)
    assert broker.stats().pending_by_priority["demo.b"] == {-1: 1, 7: 1}


@pytest.mark.parametrize(
    ("band", "priorities"),
    [(0, (0, 0)), (1, (1, 1)), (3, (4, 7)), (6, (32, 63)), (7, (64, None)), (-2, (-2, -3)),
     (-7, (-64, None))],
)  # fmt: skip
def test_band_priorities_are_the_range_priority_band_maps_there(
    band: int, priorities: tuple[int, int | None]
) -> None:
    assert band_priorities(band) == priorities
    low, high = priorities
    assert priority_band(low) == band
    if high is not None:
        assert priority_band(high) == band
        assert priority_band(high + (1 if band > 0 else -1)) != band


def test_an_idempotency_key_is_printable_ascii_with_nothing_after_it() -> None:
    assert valid_idempotency_key("order-17")
    assert valid_idempotency_key("!" * 200)
    # "$" of the pattern matched before a final newline: "order-17\n" passed
    for bad in ("order-17\n", "", "a b", "clé", "x" * 201, 17, None):
        assert not valid_idempotency_key(bad), bad
