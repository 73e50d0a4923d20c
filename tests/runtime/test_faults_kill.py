"""kill -9 of random worker processes during 10,000 tasks: nothing is lost.

Every task the killed worker held (claimed, running or waiting in its batch) is
delivered again and completes: through ``broker.recover(consumer)`` as the
supervisor calls it, or, without it, through the visibility timeout kept short by
the heartbeat. That recovered tasks are deliverable at once is the broker
contract's ``test_recover_makes_a_dead_consumers_tasks_deliverable_now``; how long
the kill-to-completion takes is measured by ``benchmarks/recovery.py``, not here.
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
#: kills that hit a worker holding tasks
KILLS = 5
#: a kill happens with at least this many tasks waiting
LOAD = 500
TOP_UP = 2_000


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

    def submit_work(count: int) -> list[str]:
        specs = [TaskSpec("fixture.sleep", {"seconds": 0.001}, max_attempts=10)] * count
        return [r.id for r in broker.submit_many(specs)]

    ids = submit_work(TASKS)
    for _ in range(3):
        pool.spawn()

    # Kill until KILLS kills have hit a worker that held tasks. Each kill happens
    # under load: on a fast machine the workers may drain the queue between two
    # kills, so it is topped up first rather than hoping.
    kills: list[set[str]] = []
    deadline = time.monotonic() + 300
    while sum(1 for held in kills if held) < KILLS:
        assert time.monotonic() < deadline, {c: pool.log(c)[-2000:] for c in pool.procs}
        ready = pool.serving()
        if len(ready) < 3:
            # the replacement is still starting: a supervisor keeps min workers up, so
            # kill again only once the pool is whole (two workers always serve)
            time.sleep(0.05)
            continue
        if sum(broker.stats().pending.values()) < LOAD:
            ids += submit_work(TOP_UP)
        victim = rng.choice(ready)
        pool.kill(victim)
        held = held_by(url, victim)
        kills.append(held)
        if supervised:
            assert broker.recover(victim) == len(held)
        pool.spawn()  # the supervisor's replacement

    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        stats = broker.stats()
        if not stats.pending and not stats.running:
            break
        time.sleep(0.2)

    done = {r.id: r for r in finished(broker, ids)}
    assert len(done) == len(ids), f"{len(ids) - len(done)} tasks lost"
    assert {r.status for r in done.values()} == {"succeeded"}
    assert broker.stats().dead == 0

    interrupted = [task_id for held in kills for task_id in held]
    assert interrupted, "no kill hit a worker holding tasks"
    # each was delivered again after its worker died, and completed
    assert all(done[task_id].attempts >= 2 for task_id in interrupted)
    broker.close()
