"""kill -9 of random worker processes during 10,000 tasks: nothing is lost.

Every task the killed worker held (claimed, running or waiting in its batch)
must complete within 10 s of the kill: through ``broker.recover(consumer)`` as
the supervisor calls it, or, without it, through the visibility timeout kept
short by the heartbeat.
"""

from __future__ import annotations

import random
import sqlite3
import time
from typing import TYPE_CHECKING

import pytest

from crank.runtime.brokers import open_broker
from crank.runtime.brokers.contract import Broker, TaskRecord, TaskSpec

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from tests.runtime.conftest import WorkerPool

TASKS = 10_000
RECOVERY_LIMIT_S = 10.0


def held_by(broker_url: str, consumer: str) -> set[str]:
    """Ids of the tasks a (dead) consumer held, read straight from the backend."""
    if broker_url.startswith("sqlite:///"):
        path = broker_url[len("sqlite:///") :].partition("?")[0]
        with sqlite3.connect(path) as db:
            rows = db.execute(
                "SELECT id FROM tasks WHERE consumer = ? AND status = 'running'", (consumer,)
            ).fetchall()
        db.close()
        return {r[0] for r in rows}
    import redis

    client = redis.Redis.from_url(broker_url.partition("?")[0], decode_responses=True)
    try:
        ids: set[str] = set()
        for stream in client.zrange("crank:streams", 0, -1):
            for entry in client.xpending_range(stream, "crank", "-", "+", 100_000, consumer):
                for _, fields in client.xrange(stream, entry["message_id"], entry["message_id"]):
                    ids.add(fields["t"])
        return ids
    finally:
        client.close()


def finished(broker: Broker, ids: list[str]) -> list[TaskRecord]:
    records = [broker.get(i) for i in ids]
    return [r for r in records if r is not None and r.done]


@pytest.fixture(params=["sqlite", "redis"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'queue.db'}"
    return str(request.getfixturevalue("redis_server"))


@pytest.mark.slow
@pytest.mark.parametrize("supervised", [True, False], ids=["recover", "visibility-timeout"])
def test_kill_9_loses_nothing_and_interrupted_tasks_finish_within_10s(
    url: str, supervised: bool, worker_pool: Callable[..., WorkerPool]
) -> None:
    rng = random.Random(5)
    broker = open_broker(url)
    # a short visibility timeout, kept alive by the heartbeat while a worker lives
    pool = worker_pool(url, ["--batch-size", "10", "--visibility-timeout", "2",
                             "--heartbeat", "0.3", "--block", "0.2"])  # fmt: skip
    records = broker.submit_many(
        [TaskSpec("fixture.sleep", {"seconds": 0.001}, max_attempts=10) for _ in range(TASKS)]
    )
    ids = [r.id for r in records]
    for _ in range(3):
        pool.spawn()

    kills: list[tuple[float, set[str]]] = []
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        time.sleep(0.3)
        stats = broker.stats()
        if sum(stats.pending.values()) < 500 or len(kills) >= 8:
            break
        ready = pool.serving()
        if len(ready) < 3:
            # the replacement is still starting: a supervisor keeps min workers up, so
            # kill again only once the pool is whole (two workers always serve)
            continue
        victim = rng.choice(ready)
        died_at = pool.kill(victim)
        held = held_by(url, victim)
        kills.append((died_at, held))
        if supervised:
            assert broker.recover(victim) == len(held)
        pool.spawn()  # the supervisor's replacement

    while time.monotonic() < deadline and len(finished(broker, ids[-100:])) < 100:
        time.sleep(0.2)
    while time.monotonic() < deadline:
        stats = broker.stats()
        if not stats.pending and not stats.running:
            break
        time.sleep(0.2)

    done = {r.id: r for r in finished(broker, ids)}
    assert len(done) == TASKS, f"{TASKS - len(done)} tasks lost"
    assert {r.status for r in done.values()} == {"succeeded"}
    assert broker.stats().dead == 0

    interrupted = [(died_at, task_id) for died_at, held in kills for task_id in held]
    assert len(kills) >= 3
    assert interrupted, "no kill hit a worker holding tasks"
    late = [
        (task_id, round(done[task_id].updated_at - died_at, 2))
        for died_at, task_id in interrupted
        if done[task_id].updated_at - died_at > RECOVERY_LIMIT_S
    ]
    assert late == []
    assert all(done[task_id].attempts >= 2 for _, task_id in interrupted)
    broker.close()
