"""Listing tasks (``Broker.list_tasks``), run against every backend: newest first, filters,
pages that hold together while tasks come and go, history kept across reopening."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import pytest

from crank.runtime.brokers import open_broker
from crank.runtime.brokers.contract import (
    MAX_PAGE,
    ClaimOptions,
    TaskQuery,
    TaskSpec,
    TaskSummary,
)

if TYPE_CHECKING:
    from crank.runtime.brokers.contract import Broker


def spec(cap: str = "demo.echo", n: int = 0, caller: str | None = None) -> TaskSpec:
    meta = {"requested": cap} if caller is None else {"requested": cap, "caller": caller}
    return TaskSpec(capability=cap, payload={"n": n}, meta=meta)


def every_page(broker: Broker, **filters: object) -> list[list[TaskSummary]]:
    """Every page of a listing, following the cursors to the end."""
    pages: list[list[TaskSummary]] = []
    cursor: str | None = None
    while True:
        page = broker.list_tasks(TaskQuery(cursor=cursor, **filters))  # type: ignore[arg-type]
        pages.append(list(page.tasks))
        if page.next_cursor is None:
            return pages
        assert len(pages) < 100, "the cursors go round in circles"
        cursor = page.next_cursor


def listed(broker: Broker, **filters: object) -> list[str]:
    return [t.id for page in every_page(broker, **filters) for t in page]


def test_newest_first_in_pages_that_end(broker: Broker) -> None:
    ids = [broker.submit(spec(n=i)).id for i in range(4)]
    ids += [r.id for r in broker.submit_many([spec(n=i) for i in range(4, 7)])]
    pages = every_page(broker, limit=3)
    assert [[t.id for t in page] for page in pages] == [ids[6:3:-1], ids[3:0:-1], ids[:1]]
    whole = broker.list_tasks(TaskQuery(limit=7))
    assert [t.id for t in whole.tasks] == ids[::-1]
    assert whole.next_cursor is None


def test_an_empty_broker_lists_one_empty_page(broker: Broker) -> None:
    page = broker.list_tasks(TaskQuery())
    assert page.tasks == ()
    assert page.next_cursor is None


def test_a_summary_says_what_a_task_is_without_its_input_or_result(broker: Broker) -> None:
    record = broker.submit(
        TaskSpec(
            "demo.echo",
            {"n": 1},
            priority=5,
            max_attempts=4,
            meta={"requested": "demo.legacy_echo", "caller": "billing"},
        )
    )
    [claim] = broker.claim(ClaimOptions("w1"))
    broker.fail(claim, {"code": "BAD", "message": "no", "type": "X"}, retryable=False)
    [summary] = broker.list_tasks(TaskQuery()).tasks
    dead = broker.get(record.id)
    assert dead is not None
    assert summary == TaskSummary(
        id=record.id,
        capability="demo.echo",
        status="dead",
        priority=5,
        attempts=1,
        max_attempts=4,
        created_at=dead.created_at,
        updated_at=dead.updated_at,
        requested="demo.legacy_echo",
        caller="billing",
        error={"code": "BAD", "message": "no", "type": "X"},
    )
    assert summary.as_dict()["caller"] == "billing"
    assert "input" not in summary.as_dict() and "result" not in summary.as_dict()


def test_filters_by_status_capability_and_caller(broker: Broker) -> None:
    a1 = broker.submit(spec("demo.a", 1, caller="alice")).id
    b1 = broker.submit(spec("demo.b", 2, caller="bob")).id
    a2 = broker.submit(spec("demo.a", 3)).id
    b2 = broker.submit(spec("demo.b", 4, caller="alice")).id
    [claim] = broker.claim(ClaimOptions("w1", capabilities=("demo.b",)))
    assert claim.task.id == b1
    broker.ack(claim, {"ok": True})
    [running] = broker.claim(ClaimOptions("w1", capabilities=("demo.a",)))
    assert running.task.id == a1

    assert listed(broker) == [b2, a2, b1, a1]
    assert listed(broker, capability="demo.a") == [a2, a1]
    assert listed(broker, caller="alice") == [b2, a1]
    assert listed(broker, caller="bob") == [b1]
    assert listed(broker, status="pending") == [b2, a2]
    assert listed(broker, status="running") == [a1]
    assert listed(broker, status="succeeded") == [b1]
    assert listed(broker, status="pending", capability="demo.b", caller="alice") == [b2]
    assert listed(broker, status="running", caller="bob") == []
    assert listed(broker, capability="demo.none") == []
    assert listed(broker, caller="nobody") == []


def test_filtered_pages_follow_on(broker: Broker) -> None:
    ids = {"demo.a": [], "demo.b": []}  # type: dict[str, list[str]]
    for i in range(10):
        cap = "demo.a" if i % 3 else "demo.b"
        ids[cap].append(broker.submit(spec(cap, i)).id)
    pages = every_page(broker, capability="demo.a", limit=2)
    assert [t.id for page in pages for t in page] == ids["demo.a"][::-1]
    assert all(len(page) == 2 for page in pages[:-1])
    assert listed(broker, status="pending", limit=1) == (
        [t.id for t in broker.list_tasks(TaskQuery(limit=MAX_PAGE)).tasks]
    )


def test_a_cursor_holds_while_new_tasks_arrive(broker: Broker) -> None:
    old = [broker.submit(spec(n=i)).id for i in range(4)]
    first = broker.list_tasks(TaskQuery(limit=2))
    assert [t.id for t in first.tasks] == old[:1:-1]
    newer = [broker.submit(spec(n=i)).id for i in range(4, 6)]
    rest = broker.list_tasks(TaskQuery(limit=10, cursor=first.next_cursor))
    assert [t.id for t in rest.tasks] == old[1::-1]
    assert listed(broker, limit=4) == newer[::-1] + old[::-1]


def test_queries_a_backend_cannot_answer_are_refused_before_asking() -> None:
    with pytest.raises(ValueError, match="1 to 500"):
        TaskQuery(limit=0)
    with pytest.raises(ValueError, match="1 to 500"):
        TaskQuery(limit=MAX_PAGE + 1)
    for cursor in ("", "abc", "-1", "1.5", "١٢", "9" * 20):
        with pytest.raises(ValueError, match="not a cursor"):
            TaskQuery(cursor=cursor)


@pytest.mark.slow
def test_expired_tasks_are_not_listed(broker_url: str) -> None:
    broker = open_broker(broker_url, result_ttl_s=1.0)
    try:
        done = broker.submit(spec(n=1)).id
        kept = broker.submit(spec(n=2)).id
        [claim] = broker.claim(ClaimOptions("w1"))
        assert claim.task.id == done
        broker.ack(claim, {})
        deadline = time.monotonic() + 60
        while broker.get(done) is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert listed(broker) == [kept]
        assert listed(broker, status="succeeded") == []
    finally:
        broker.close()


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_history_survives_reopening_the_broker(
    kind: str, tmp_path: object, request: pytest.FixtureRequest
) -> None:
    url = (
        f"sqlite:///{tmp_path}/queue.db"
        if kind == "sqlite"
        else request.getfixturevalue("redis_server")
    )
    first = open_broker(url)
    try:
        ids = [first.submit(spec(n=i, caller="ops")).id for i in range(3)]
        [claim] = first.claim(ClaimOptions("w1"))
        first.ack(claim, {"n": 0})
    finally:
        first.close()
    again = open_broker(url)
    try:
        assert listed(again) == ids[::-1]
        assert listed(again, status="succeeded", caller="ops") == ids[:1]
    finally:
        again.close()
