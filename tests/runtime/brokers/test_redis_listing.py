"""The Redis list index where the contract tests cannot see it: bounded walks that answer
short pages, the sweep that keeps the index as large as the tasks, odd caller names."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import pytest

from crank.runtime.brokers import open_broker
from crank.runtime.brokers import redis as redis_broker
from crank.runtime.brokers.contract import ClaimOptions, TaskQuery, TaskSpec

if TYPE_CHECKING:
    from collections.abc import Iterator

    import redis


@pytest.fixture
def admin(redis_server: str) -> Iterator[redis.Redis]:
    import redis

    client = redis.Redis.from_url(redis_server, decode_responses=True)
    try:
        yield client
    finally:
        client.close()


def spec(cap: str, n: int, caller: str | None = None) -> TaskSpec:
    return TaskSpec(cap, {"n": n}, meta={"caller": caller} if caller else {})


def test_a_walk_cut_short_answers_a_short_page_and_goes_on_from_its_cursor(
    redis_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 3 entries per call and 2 calls per page: a rare status is found over several pages
    monkeypatch.setattr(redis_broker, "_LIST_BUDGET", 3)
    monkeypatch.setattr(redis_broker, "_LIST_CALLS", 2)
    broker = open_broker(redis_server)
    try:
        ids = [broker.submit(spec("demo.a", i)).id for i in range(20)]
        claimed = {c.task.id for c in broker.claim(ClaimOptions("w1", limit=2))}
        assert claimed == set(ids[:2])
        pages, cursor = [], None
        while True:
            page = broker.list_tasks(TaskQuery(status="running", limit=5, cursor=cursor))
            pages.append([t.id for t in page.tasks])
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        assert [task for page in pages for task in page] == ids[1::-1]
        assert pages[0] == []  # the first 6 entries looked at are pending: a short page
        assert len(pages) >= 3
    finally:
        broker.close()


def test_the_sweep_takes_out_only_expired_tasks(redis_server: str, admin: redis.Redis) -> None:
    broker = open_broker(redis_server, result_ttl_s=1.0)
    try:
        # 64 tasks: the next submit starts a sweep (every 64 tasks)
        old = [r.id for r in broker.submit_many([spec("demo.a", i) for i in range(64)])]
        claims = broker.claim(ClaimOptions("w1", limit=63))
        broker.ack_many([(c, {}) for c in claims])
        pending = {t for t in old if t not in {c.task.id for c in claims}}
        # the clock is read once a minute: mark the time these were submitted
        [(first, _)] = admin.zrange("crank:ix:clock", 0, -1, withscores=True)
        admin.zadd("crank:ix:clock", {first: time.time() - 5})
        admin.zadd("crank:ix:clock", {"64": time.time() - 2})
        deadline = time.monotonic() + 60
        while admin.exists(*(f"crank:t:{c.task.id}" for c in claims)):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert admin.zcard("crank:ix") == 64  # nobody listed: the entries stayed
        new = [r.id for r in broker.submit_many([spec("demo.b", i) for i in range(64)])]
        assert admin.zcard("crank:ix") == 1 + 64
        listed = [t.id for t in broker.list_tasks(TaskQuery(limit=100)).tasks]
        assert listed == new[::-1] + sorted(pending)
    finally:
        broker.close()


def test_a_young_index_is_not_swept(redis_server: str, admin: redis.Redis) -> None:
    broker = open_broker(redis_server)
    try:
        broker.submit_many([spec("demo.a", i) for i in range(200)])
        assert not admin.exists("crank:ix:swept")
        assert admin.zcard("crank:ix") == 200
    finally:
        broker.close()


def test_a_list_takes_out_the_expired_entries_it_meets(
    redis_server: str, admin: redis.Redis
) -> None:
    broker = open_broker(redis_server)
    try:
        ids = [broker.submit(spec("demo.a", i, caller="ops")).id for i in range(3)]
        admin.delete(f"crank:t:{ids[1]}")  # as if it expired
        assert [t.id for t in broker.list_tasks(TaskQuery(caller="ops")).tasks] == [
            ids[2],
            ids[0],
        ]
        assert admin.zcard("crank:ix") == 2
    finally:
        broker.close()
