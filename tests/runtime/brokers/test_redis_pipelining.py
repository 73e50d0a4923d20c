"""The Redis broker's ack-and-claim that overlaps the worker (``begin_ack_and_claim``):
what happens when Redis forgot the scripts or went away while the answer was due."""

from __future__ import annotations

import os
import signal
from typing import TYPE_CHECKING

import pytest

from crank.errors import BrokerError
from crank.runtime.brokers import open_broker
from crank.runtime.brokers.contract import ClaimOptions, TaskSpec

if TYPE_CHECKING:
    from pathlib import Path

    from tests.runtime.conftest import RedisServer


def test_a_flushed_script_cache_is_reloaded_and_nothing_runs_twice(redis_server: str) -> None:
    import redis

    broker = open_broker(redis_server)
    records = broker.submit_many([TaskSpec("demo.echo", {"n": i}) for i in range(3)])
    [first] = broker.claim(ClaimOptions("w1"))
    admin = redis.Redis.from_url(redis_server)
    admin.script_flush()  # what a restarted redis-server looks like to a script caller
    claims = broker.begin_ack_and_claim([(first, {"ok": 1})], ClaimOptions("w1", limit=5)).result()
    assert sorted(c.task.payload["n"] for c in claims) == [1, 2]
    assert all(c.attempt == 1 for c in claims)
    done = broker.get(records[0].id)
    assert done is not None and (done.status, done.result, done.attempts) == (
        "succeeded",
        {"ok": 1},
        1,
    )
    admin.close()
    broker.close()


def test_redis_gone_before_answering_is_a_broker_error_and_the_broker_recovers(
    redis_server_aof: RedisServer, tmp_path: Path
) -> None:
    broker = open_broker(redis_server_aof.url)
    broker.submit_many([TaskSpec("demo.echo", {"n": i}) for i in range(2)])
    [first] = broker.claim(ClaimOptions("w1"))
    proc = redis_server_aof.proc
    assert proc is not None
    os.kill(proc.pid, signal.SIGSTOP)  # the commands are written, never answered
    try:
        pending = broker.begin_ack_and_claim([(first, {"ok": 1})], ClaimOptions("w1", limit=5))
    finally:
        redis_server_aof.stop(kill=True)
    with pytest.raises(BrokerError) as info:
        pending.result()
    assert redis_server_aof.url in info.value.message
    assert "redis-cli" in (info.value.hint or "")
    redis_server_aof.start()
    # the AOF kept the first claim; acking again is harmless, the other task comes next
    claims = broker.begin_ack_and_claim([(first, {"ok": 1})], ClaimOptions("w1", limit=5)).result()
    assert [c.task.payload["n"] for c in claims] == [1]
    done = broker.get(first.task.id)
    assert done is not None and done.status == "succeeded"
    broker.close()
