"""SIGTERM during load loses nothing and runs nothing twice; a poison task dead-letters."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import pytest

from crank.runtime.brokers import open_broker
from crank.runtime.brokers.contract import TaskSpec

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from tests.runtime.conftest import WorkerPool

TASKS = 3_000
#: a stop happens with at least this many tasks waiting
LOAD = 300
TOP_UP = 1_000


@pytest.fixture(params=["sqlite", "redis"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'queue.db'}?retry_base_s=0.05&retry_max_s=0.2"
    return str(request.getfixturevalue("redis_server")) + "?retry_base_s=0.05&retry_max_s=0.2"


@pytest.mark.slow
def test_sigterm_during_load_loses_nothing_and_poison_reaches_dead_letters(
    url: str, worker_pool: Callable[..., WorkerPool]
) -> None:
    broker = open_broker(url)
    pool = worker_pool(url, ["--batch-size", "20", "--grace", "5", "--block", "0.2"])

    def submit_work(count: int) -> list[str]:
        specs = [TaskSpec("fixture.sleep", {"seconds": 0.0005}) for _ in range(count)]
        return [r.id for r in broker.submit_many(specs)]

    ids = submit_work(TASKS)
    poison = broker.submit(TaskSpec("fixture.poison", {}, max_attempts=3))
    for _ in range(2):
        pool.spawn()

    # Four stops, each while work is waiting: on a fast machine the workers may drain
    # the queue between two stops, so it is topped up first rather than hoping.
    stopped: dict[str, int] = {}
    deadline = time.monotonic() + 300
    while len(stopped) < 4:
        assert time.monotonic() < deadline, {c: pool.log(c)[-2000:] for c in pool.procs}
        serving = pool.serving()
        if not serving:
            time.sleep(0.05)
            continue
        if sum(broker.stats().pending.values()) < LOAD:
            ids += submit_work(TOP_UP)
        victim = serving[0]
        stopped[victim] = pool.terminate(victim)
        pool.spawn()

    # the poison task's retries run on their own backoff: wait for it too
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        records = [broker.get(i) for i in (*ids, poison.id)]
        if all(r is not None and r.done for r in records):
            break
        time.sleep(0.2)

    assert len(stopped) == 4
    assert set(stopped.values()) == {0}, {c: pool.log(c)[-2000:] for c in stopped}
    assert all(f"worker {c} stopped after" in pool.log(c) for c in stopped)
    records = [broker.get(i) for i in ids]
    assert [r.status if r else "lost" for r in records] == ["succeeded"] * len(ids)
    # released tasks do not count an attempt: graceful shutdown ran each task once
    assert {r.attempts for r in records if r} == {1}

    dead = broker.get(poison.id)
    assert dead is not None
    assert (dead.status, dead.attempts) == ("dead", 3)
    assert dead.error is not None
    assert dead.error["code"] == "FLAKY"
    assert [d.id for d in broker.dead_letters()] == [poison.id]
    broker.close()
