"""Redis killed and restarted mid-run (AOF, appendfsync always): workers reconnect, 0 lost."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import pytest

from crank.errors import BrokerError
from crank.runtime.brokers import open_broker
from crank.runtime.brokers.contract import TaskSpec

if TYPE_CHECKING:
    from collections.abc import Callable

    from tests.runtime.conftest import RedisServer, WorkerPool

    from crank.runtime.brokers.contract import Broker

TASKS = 5_000


def pending(broker: Broker) -> int | None:
    try:
        stats = broker.stats()
    except BrokerError:
        return None
    return int(sum(stats.pending.values()) + stats.running)


@pytest.mark.slow
def test_workers_reconnect_after_a_redis_restart_and_lose_nothing(
    redis_server_aof: RedisServer, worker_pool: Callable[..., WorkerPool]
) -> None:
    url = redis_server_aof.url
    broker = open_broker(url)
    pool = worker_pool(url, ["--batch-size", "20", "--visibility-timeout", "5", "--block", "0.2"])
    ids = [
        r.id
        for r in broker.submit_many(
            [TaskSpec("fixture.sleep", {"seconds": 0.001}) for _ in range(TASKS)]
        )
    ]
    workers = [pool.spawn(), pool.spawn()]

    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        left = pending(broker)
        if left is not None and left < TASKS * 0.7:
            break
        time.sleep(0.05)
    assert left, "the workers finished before Redis could be killed"
    redis_server_aof.stop(kill=True)  # kill -9: only what was fsynced survives
    # restart only once a worker has seen the broker down
    while not any("broker unavailable, retrying" in pool.log(w) for w in workers):
        assert time.monotonic() < deadline, {w: pool.log(w)[-2000:] for w in workers}
        time.sleep(0.05)
    redis_server_aof.start()

    while time.monotonic() < deadline:
        if pending(broker) == 0:
            break
        time.sleep(0.2)

    assert pool.alive() == workers  # they reconnected; nobody had to restart them
    assert any("broker unavailable, retrying" in pool.log(w) for w in workers)
    # each one that said the broker was down says when it is back (one may still be
    # in its backoff when the other finished the last task)
    down = [w for w in workers if "broker unavailable, retrying" in pool.log(w)]
    while not all("broker available again (" in pool.log(w) for w in down):
        assert time.monotonic() < deadline, {w: pool.log(w)[-2000:] for w in down}
        time.sleep(0.05)
    records = [broker.get(i) for i in ids]
    assert [r.status if r else "lost" for r in records] == ["succeeded"] * TASKS
    broker.close()
