"""Redriving and purging dead letters, run against every backend: a redriven task is
queued again as if new and can succeed; a purged one is gone; tasks that are not dead
are never touched; the dead-letter count stays true."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import redis as redis_lib

from crank.runtime.brokers import open_broker
from crank.runtime.brokers import redis as redis_broker
from crank.runtime.brokers.contract import ClaimOptions, TaskQuery, TaskSpec

from .test_contract import claim_until

if TYPE_CHECKING:
    import pytest

    from crank.runtime.brokers.contract import Broker, TaskRecord

BAD = {"code": "BAD", "message": "no", "type": "X"}


def dead_letter(broker: Broker, capability: str = "demo.echo", **kw: object) -> TaskRecord:
    """A task of ``capability`` that ended ``dead`` (a non-retryable failure)."""
    record = broker.submit(TaskSpec(capability, {"n": 1}, **kw))  # type: ignore[arg-type]
    [claim] = claim_until(broker, 1)
    assert claim.task.id == record.id
    assert broker.fail(claim, BAD, retryable=False) == "dead"
    return record


def test_a_redriven_dead_letter_runs_again_and_can_succeed(broker: Broker) -> None:
    record = dead_letter(broker, priority=5, idempotency_key="k-1")
    assert broker.stats().dead == 1

    change = broker.redrive(record.id)
    assert change is not None and change.changed
    again = change.task
    assert (again.id, again.status, again.attempts, again.error) == (record.id, "pending", 0, None)
    assert (again.priority, again.payload, again.created_at) == (5, {"n": 1}, record.created_at)
    assert broker.stats().dead == 0
    assert broker.dead_letters() == []
    assert broker.stats().pending == {"demo.echo": 1}

    [claim] = claim_until(broker, 1)
    assert (claim.task.id, claim.attempt) == (record.id, 1)
    broker.ack(claim, {"ok": True})
    done = broker.get(record.id)
    assert done is not None
    assert (done.status, done.result, done.attempts) == ("succeeded", {"ok": True}, 1)
    # the idempotency key still names the same task
    assert broker.submit(TaskSpec("demo.echo", {"n": 1}, idempotency_key="k-1")).id == record.id


def test_a_redrive_answers_with_the_task_as_it_left_it(
    broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker may claim the redriven task before the redrive has answered; the answer
    is still the moment of the redrive: pending, no attempts (the contract's word)."""
    record = dead_letter(broker)
    claimed: list[Any] = []
    if hasattr(broker, "_script"):  # Redis: a worker claims it right after the script
        script = broker._script

        def then_a_worker_claims_it(name: str, args: Any, what: str) -> Any:
            reply = script(name, args, what)
            if name == "dead":
                claimed.extend(claim_until(broker, 1))
            return reply

        monkeypatch.setattr(broker, "_script", then_a_worker_claims_it)
    change = broker.redrive(record.id)
    assert change is not None and change.changed
    assert (change.task.status, change.task.attempts) == ("pending", 0)
    if claimed:
        now = broker.get(record.id)
        assert now is not None and now.status == "running"  # the claim did happen


def test_a_purge_answers_with_the_task_as_it_was(broker: Broker) -> None:
    record = dead_letter(broker)
    change = broker.purge_dead_letter(record.id)
    assert change is not None and change.changed
    assert (change.task.id, change.task.status, change.task.error) == (record.id, "dead", BAD)
    assert broker.get(record.id) is None
    assert broker.purge_dead_letter(record.id) is None  # gone: nothing to purge


def test_a_redriven_task_goes_after_those_waiting_at_its_priority(broker: Broker) -> None:
    dead = dead_letter(broker)
    waiting = broker.submit(TaskSpec("demo.echo", {"n": 2}))
    assert broker.redrive(dead.id) is not None
    first = broker.claim(ClaimOptions("w1", limit=1, block_s=5.0))
    second = broker.claim(ClaimOptions("w1", limit=1, block_s=5.0))
    assert [c.task.id for c in first + second] == [waiting.id, dead.id]


def test_a_dead_letter_redriven_that_dies_again_is_one_dead_letter(broker: Broker) -> None:
    record = dead_letter(broker)
    assert broker.redrive(record.id) is not None
    [claim] = claim_until(broker, 1)
    assert broker.fail(claim, BAD, retryable=False) == "dead"
    assert [d.id for d in broker.dead_letters()] == [record.id]
    assert broker.stats().dead == 1


def test_redrive_all_of_a_capability_leaves_the_others(broker: Broker) -> None:
    ours = [dead_letter(broker, "demo.a") for _ in range(3)]
    theirs = dead_letter(broker, "demo.b")
    assert broker.redrive_dead_letters("demo.a") == 3
    assert broker.redrive_dead_letters("demo.a") == 0  # nothing left to redrive
    assert [d.id for d in broker.dead_letters()] == [theirs.id]
    assert broker.stats().dead == 1
    claims = claim_until(broker, 3)
    assert sorted(c.task.id for c in claims) == sorted(r.id for r in ours)
    assert all(c.attempt == 1 for c in claims)


def test_purge_one_and_all_of_a_capability(broker: Broker) -> None:
    first, second = dead_letter(broker, "demo.a"), dead_letter(broker, "demo.a")
    theirs = dead_letter(broker, "demo.b", idempotency_key="k-2")
    change = broker.purge_dead_letter(first.id)
    assert change is not None and change.changed
    assert (change.task.id, change.task.status) == (first.id, "dead")
    assert broker.get(first.id) is None
    assert broker.purge_dead_letter(first.id) is None  # gone

    assert broker.purge_dead_letters("demo.a") == 1
    assert broker.get(second.id) is None
    assert [d.id for d in broker.dead_letters()] == [theirs.id]
    assert broker.stats().dead == 1
    listed = broker.list_tasks(TaskQuery())
    assert [t.id for t in listed.tasks] == [theirs.id]

    assert broker.purge_dead_letter(theirs.id) is not None
    assert broker.stats().dead == 0
    # its idempotency key is free again: a new task is made
    fresh = broker.submit(TaskSpec("demo.b", {"n": 1}, idempotency_key="k-2"))
    assert fresh.id != theirs.id


def test_what_is_not_dead_is_left_alone(broker: Broker) -> None:
    pending = broker.submit(TaskSpec("demo.a", {"n": 1}))
    for act in (broker.redrive, broker.purge_dead_letter):
        change = act(pending.id)
        assert change is not None
        assert (change.changed, change.task.status) == (False, "pending")
    running = broker.submit(TaskSpec("demo.b", {"n": 2}))
    [claim] = broker.claim(ClaimOptions("w1", limit=1, capabilities=("demo.b",)))
    assert claim.task.id == running.id
    assert broker.redrive_dead_letters("demo.b") == 0
    assert broker.purge_dead_letters("demo.b") == 0
    broker.ack(claim, {"ok": 1})
    change = broker.purge_dead_letter(running.id)
    assert change is not None
    assert (change.changed, change.task.status) == (False, "succeeded")
    assert broker.get(running.id) is not None
    assert broker.redrive("no-such-task") is None
    assert broker.purge_dead_letter("no-such-task") is None
    assert broker.redrive_dead_letters("demo.none") == 0


def test_redis_walks_the_dead_letters_a_few_at_a_time(
    redis_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bulk forms call the script again and again (a few entries each) until the end
    of ``P:dead``; a dead letter from before the hash named its entry is found too."""
    monkeypatch.setattr(redis_broker, "_DEAD_BUDGET", 2)
    broker = open_broker(redis_server)
    try:
        old = dead_letter(broker, "demo.c")  # as written before dead_entry existed
        for n in range(6):
            dead_letter(broker, "demo.a" if n % 2 else "demo.b")
        raw = redis_lib.Redis.from_url(redis_server)
        raw.hdel(f"crank:t:{old.id}", "dead_entry")
        assert broker.redrive_dead_letters("demo.a") == 3
        assert broker.purge_dead_letters("demo.b") == 3
        assert [d.id for d in broker.dead_letters()] == [old.id]
        change = broker.redrive(old.id)
        assert change is not None and change.changed
        assert broker.stats().dead == 0
        raw.close()
    finally:
        broker.close()
