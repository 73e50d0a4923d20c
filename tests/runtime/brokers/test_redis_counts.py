"""What the Redis broker counts: every retry waiting out its backoff, every dead letter.

Retries wait in ``P:delayed`` (by due time), off their stream. The stats counted them
by reading each one's task hash from ``P:delayed``, at most the first 10,000: with
15,000 backing off (a downstream outage), ``/v1/status``, ``/metrics`` and the
``CRANK_MAX_PENDING`` admission saw 10,000, and each count took Redis 25 ms. Now
each stream's retries are also in ``P:delayed:<stream>``, counted with ``ZCARD``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from crank.routing.queues import stream_key
from crank.runtime.brokers import open_broker
from crank.runtime.brokers.contract import ClaimOptions, TaskSpec

if TYPE_CHECKING:
    from collections.abc import Iterator

    import redis as redis_py

    from crank.runtime.brokers.redis import RedisBroker

DOWN = {"code": "DOWN", "message": "the service it calls is down"}


@pytest.fixture
def broker(redis_server: str) -> Iterator[RedisBroker]:
    # an hour's backoff: what fails waits while the test runs
    opened = open_broker(f"{redis_server}?retry_base_s=3600&retry_max_s=3600")
    yield opened  # type: ignore[misc]
    opened.close()


@pytest.fixture
def admin(redis_server: str) -> Iterator[redis_py.Redis]:
    import redis

    client = redis.Redis.from_url(redis_server, decode_responses=True)
    yield client
    client.close()


def fail_all(broker: RedisBroker, capability: str, count: int, priority: int = 0) -> list[str]:
    """``count`` tasks that failed once and now wait out their backoff."""
    broker.submit_many([TaskSpec(capability, {"n": n}, priority=priority) for n in range(count)])
    claims = broker.claim(ClaimOptions("w1", capabilities=(capability,), limit=count))
    assert len(claims) == count
    for claim in claims:
        assert broker.fail(claim, DOWN, retryable=True) == "retrying"
    return [c.task.id for c in claims]


def test_more_than_ten_thousand_retries_are_all_counted(broker: RedisBroker) -> None:
    fail_all(broker, "demo.echo", 10_050)
    fail_all(broker, "demo.other", 3, priority=5)
    broker.submit_many([TaskSpec("demo.echo", {"n": "fresh"})])
    stats = broker.stats()
    assert stats.pending == {"demo.echo": 10_051, "demo.other": 3}
    assert stats.pending_by_priority == {"demo.echo": {0: 10_051}, "demo.other": {3: 3}}
    assert stats.running == 0


def test_each_way_off_the_backoff_is_counted(broker: RedisBroker, admin: redis_py.Redis) -> None:
    ids = fail_all(broker, "demo.echo", 4)
    assert broker.stats().pending == {"demo.echo": 4}
    cancelled = broker.cancel(ids[0])
    assert cancelled is not None and cancelled.outcome == "cancelled"
    assert broker.stats().pending == {"demo.echo": 3}
    # two backoffs run out: the next claim puts them back on their stream, then takes one
    admin.zadd("crank:delayed", {ids[1]: 0, ids[2]: 1})  # ids[1] due first
    (claim,) = broker.claim(ClaimOptions("w2", capabilities=("demo.echo",), limit=1))
    assert claim.task.id == ids[1]
    stats = broker.stats()
    assert stats.pending == {"demo.echo": 2}  # one back on its stream, one backing off
    assert stats.running == 1
    broker.ack(claim, {"n": 1})
    assert broker.stats().pending == {"demo.echo": 2}
    assert admin.zcard(f"crank:delayed:{stream_key('crank', 'demo.echo', 0)}") == 1


def test_retries_an_earlier_crank_put_back_are_counted(
    broker: RedisBroker, admin: redis_py.Redis
) -> None:
    """An earlier crank added retries to ``P:delayed`` alone; the first count after it
    makes the per-stream sets again (and drops an entry whose task is gone, as the
    claim that found it due would)."""
    fail_all(broker, "demo.echo", 5)
    fail_all(broker, "demo.other", 2)
    for cap in ("demo.echo", "demo.other"):
        admin.delete(f"crank:delayed:{stream_key('crank', cap, 0)}")
    admin.zadd("crank:delayed", {"no-such-task": 1e12})
    assert broker.stats().pending == {"demo.echo": 5, "demo.other": 2}
    assert admin.zscore("crank:delayed", "no-such-task") is None
    assert admin.zcard(f"crank:delayed:{stream_key('crank', 'demo.echo', 0)}") == 5


def test_every_dead_letter_stays_counted_and_reachable(redis_server: str) -> None:
    """The dead-letter stream was trimmed to about 100,000 entries: past that, the
    oldest dead letters were neither counted nor redriven by a capability's redrive,
    though their tasks stayed dead (kept for good)."""
    broker = open_broker(redis_server)
    total = 100_300
    try:
        for start in range(0, total, 20_000):
            count = min(20_000, total - start)
            broker.submit_many([TaskSpec("demo.echo", {"n": n}) for n in range(count)])
            options = ClaimOptions("w1", capabilities=("demo.echo",), limit=count)
            for claim in broker.claim(options):
                broker.fail(claim, DOWN, retryable=False)
        assert broker.stats().dead == total
        assert broker.redrive_dead_letters("demo.echo") == total
        assert broker.stats().dead == 0
        assert broker.stats().pending == {"demo.echo": total}
    finally:
        broker.close()


def test_a_bulk_redrive_takes_the_dead_letters_of_when_it_began(
    broker: RedisBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The walk of P:dead stops at its last entry as of the first call: a task that
    dies while the walk goes on (a redriven one failing again at once, say) is not
    taken, so a redrive of a poison capability ends."""
    from crank.runtime.brokers import redis as redis_broker

    broker.submit_many([TaskSpec("demo.echo", {"n": n}) for n in range(3)])
    first, second, late = broker.claim(ClaimOptions("w1", capabilities=("demo.echo",), limit=3))
    for claim in (first, second):
        assert broker.fail(claim, DOWN, retryable=False) == "dead"
    monkeypatch.setattr(redis_broker, "_DEAD_BUDGET", 1)  # one entry per script call
    script = broker._script
    calls: list[str] = []

    def script_then_a_death(name: str, args: list[Any], what: str) -> Any:
        answer = script(name, args, what)
        if name == "dead" and not calls:  # after the walk's first call
            calls.append(name)
            assert broker.fail(late, DOWN, retryable=False) == "dead"
        return answer

    monkeypatch.setattr(broker, "_script", script_then_a_death)
    assert broker.redrive_dead_letters("demo.echo") == 2
    assert calls == ["dead"]
    for claim, status in ((first, "pending"), (second, "pending"), (late, "dead")):
        record = broker.get(claim.task.id)
        assert record is not None and record.status == status
