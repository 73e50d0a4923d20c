"""The Redis submit script's idempotency paths that the contract tests cannot reach:
a key whose owner predates input fingerprints, and a key that outlived its task."""

from __future__ import annotations

import pytest

from crank.runtime.brokers import open_broker
from crank.runtime.brokers.contract import IdempotencyKeyReused, TaskSpec


def test_an_owner_without_a_fingerprint_is_compared_by_its_stored_input(
    redis_server: str,
) -> None:
    import redis

    broker = open_broker(redis_server)
    admin = redis.Redis.from_url(redis_server, decode_responses=True)
    try:
        first = broker.submit(TaskSpec("demo.echo", {"n": 1}, idempotency_key=":old"))
        # what a task hash written before fingerprints looks like
        assert admin.hdel(f"crank:t:{first.id}", "fp") == 1
        assert broker.submit(TaskSpec("demo.echo", {"n": 1}, idempotency_key=":old")).id == (
            first.id
        )
        with pytest.raises(IdempotencyKeyReused):
            broker.submit(TaskSpec("demo.echo", {"n": 2}, idempotency_key=":old"))
    finally:
        admin.close()
        broker.close()


def test_a_key_that_outlived_its_task_is_free_again(redis_server: str) -> None:
    import redis

    broker = open_broker(redis_server)
    admin = redis.Redis.from_url(redis_server, decode_responses=True)
    try:
        first = broker.submit(TaskSpec("demo.echo", {"n": 1}, idempotency_key=":gone"))
        admin.delete(f"crank:t:{first.id}")
        second = broker.submit(TaskSpec("demo.echo", {"n": 2}, idempotency_key=":gone"))
        assert second.id != first.id
        assert admin.get("crank:idem::gone") == second.id
        stored = broker.get(second.id)
        assert stored is not None
        assert stored.payload == {"n": 2}
    finally:
        admin.close()
        broker.close()
