"""The Redis broker's calls on a task's way: its own connection (the pool while that one
is busy), the notice channel recorded by the submit itself, and an idle claim that
names the streams to block on. Each against a real redis-server."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, cast

import pytest
import redis

from crank.client.tasks import TaskInfo
from crank.runtime.brokers import open_broker
from crank.runtime.brokers import redis as redis_module
from crank.runtime.brokers.contract import (
    ClaimOptions,
    TaskQuery,
    TaskRecord,
    TaskSpec,
    TaskSummary,
)

if TYPE_CHECKING:
    from crank.runtime.brokers.redis import RedisBroker


def redis_broker(url: str) -> RedisBroker:
    return cast("RedisBroker", open_broker(url))


def test_a_call_while_the_own_connection_is_busy_takes_one_from_the_pool(
    redis_server: str,
) -> None:
    broker = redis_broker(redis_server)
    try:
        [first] = broker.submit_many([TaskSpec("demo.echo", {"n": 0})])
        [claim] = broker.claim(ClaimOptions("w1"))
        # written, not read: the broker's own connection stays taken until .result()
        pending = broker.begin_ack_and_claim([(claim, {"ok": 0})], ClaimOptions("w1", limit=5))
        # the same thread and another one submit meanwhile: neither waits for it
        [second] = broker.submit_many([TaskSpec("demo.echo", {"n": 1})])
        other: list[TaskRecord | None] = []
        thread = threading.Thread(target=lambda: other.append(broker.get(second.id)))
        thread.start()
        thread.join(timeout=60)
        # (the claim written before may already hold it: it blocks for work on the server)
        assert other and other[0] is not None and other[0].status in ("pending", "running")
        # the claim ran as it was written, before or after that submit: one of the two
        # claims takes it
        claims = pending.result() or broker.claim(ClaimOptions("w1", limit=5))
        assert [c.task.id for c in claims] == [second.id]
        done = broker.get(first.id)
        assert done is not None and (done.status, done.result) == ("succeeded", {"ok": 0})
        # and the own connection is free again: the next call goes through it
        broker.ack(claims[0], {"ok": 1})
        again = broker.get(second.id)
        assert again is not None and again.status == "succeeded"
    finally:
        broker.close()


def test_a_watched_submit_records_the_notice_channel_in_the_same_call(
    redis_server: str,
) -> None:
    broker = redis_broker(redis_server)
    admin = redis.Redis.from_url(redis_server, decode_responses=True)
    try:
        [watched] = broker.submit_many([TaskSpec("demo.echo", {"n": 1})], watch=True)
        [unwatched] = broker.submit_many([TaskSpec("demo.echo", {"n": 2})])
        assert admin.smembers(f"crank:w:{watched.id}") == {broker.notice_channel}
        assert 0 < admin.ttl(f"crank:w:{watched.id}") <= 86_400
        assert not admin.exists(f"crank:w:{unwatched.id}")
        # a submit refused as a repeat creates nothing: only the task that owns the key
        # is watched (so its notice comes), no set is left for an id never created
        keyed = TaskSpec("demo.echo", {"n": 3}, idempotency_key="k1")
        [owner] = broker.submit_many([keyed])
        before = set(admin.scan_iter("crank:w:*"))
        [again] = broker.submit_many([keyed], watch=True)
        assert again.id == owner.id
        assert set(admin.scan_iter("crank:w:*")) - before == {f"crank:w:{owner.id}"}
        # and the recorded channel is what tells this process the task ended
        notices = broker.result_notices()
        [claim] = broker.claim(ClaimOptions("w1", limit=1))
        assert claim.task.id == watched.id
        broker.ack(claim, {"n": 1})
        notice = notices.wait(watched.id, 3600)
        notices.forget(watched.id)
        assert notice is not None and (notice.status, notice.body) == ("succeeded", '{"n": 1}')
    finally:
        admin.close()
        broker.close()


def test_an_idle_claim_names_the_streams_of_its_capabilities_to_block_on(
    redis_server: str,
) -> None:
    broker = redis_broker(redis_server)
    try:
        # streams for two capabilities, one of them in two priority bands
        specs = [TaskSpec("demo.a", {}), TaskSpec("demo.a", {}, priority=5), TaskSpec("demo.b", {})]
        broker.submit_many(specs)
        claims = broker.claim(ClaimOptions("w1", limit=10))
        assert len(claims) == 3
        pending = broker._begin_ack_and_claim(
            [(c, None) for c in claims], ClaimOptions("w1", limit=10, capabilities=("demo.a",))
        )
        assert pending.result() == []
        # only demo.a's, the higher band first
        assert pending.streams == ["crank:q:demo.a:3", "crank:q:demo.a:0"]
        # a claim that took something names none (the worker does not block)
        broker.submit_many([TaskSpec("demo.a", {})])
        busy = broker._begin_ack_and_claim([], ClaimOptions("w1", capabilities=("demo.a",)))
        assert len(busy.result()) == 1 and busy.streams == []
        # the blocking claim waits on those streams and takes what arrives there
        got: list[str] = []
        waiting = threading.Thread(
            target=lambda: got.extend(
                c.task.payload["n"]
                for c in broker.ack_and_claim(
                    [], ClaimOptions("w2", capabilities=("demo.a",), block_s=3600)
                )
            )
        )
        waiting.start()
        producer = redis_broker(redis_server)
        try:
            producer.submit_many([TaskSpec("demo.a", {"n": "late"}, priority=5)])
        finally:
            producer.close()
        waiting.join(timeout=120)
        assert got == ["late"]
    finally:
        broker.close()


def test_requested_is_the_id_asked_for_else_the_capability(redis_server: str) -> None:
    broker = redis_broker(redis_server)
    try:
        records = broker.submit_many(
            [
                TaskSpec("demo.echo", {}, meta={"requested": "demo.legacy_echo"}),
                TaskSpec("demo.echo", {}),
                TaskSpec("demo.echo", {}, meta={"requested": 7}),  # not an id: ignored
            ]
        )
        stored = [broker.get(r.id) for r in records]
        assert all(s is not None for s in stored)
        expected = ["demo.legacy_echo", "demo.echo", "demo.echo"]
        assert [cast("TaskRecord", s).requested for s in stored] == expected
        # the server's summary and the client's view say the same
        assert [TaskSummary.of(cast("TaskRecord", s)).requested for s in stored] == expected
        assert [TaskInfo.from_record(cast("TaskRecord", s)).requested for s in stored] == expected
        listed = {t.id: t.requested for t in broker.list_tasks(TaskQuery()).tasks}
        assert [listed[r.id] for r in records] == expected
    finally:
        broker.close()


def _blocked_in_xreadgroup(admin: redis.Redis, name: str) -> bool:
    clients = cast("list[dict[str, str]]", admin.client_list())
    return any(c.get("name") == name and c.get("cmd") == "xreadgroup" for c in clients)


@pytest.mark.parametrize("give_back", ["release", "recover", "retry"])
def test_a_waiting_claim_wakes_for_a_task_given_back_or_a_retry_coming_due(
    redis_server: str, monkeypatch: pytest.MonkeyPatch, give_back: str
) -> None:
    # A worker that found nothing waits in XREADGROUP BLOCK on the task streams. A task
    # given back, or a retry put off, is no new entry there; the waiting worker must
    # still take it at once, not when its wait runs out (made an hour here).
    monkeypatch.setattr(redis_module, "_BLOCK_SLICE_S", 3600.0)
    holder, waiter = redis_broker(redis_server), redis_broker(redis_server)
    admin = redis.Redis.from_url(redis_server, decode_responses=True)
    try:
        [record] = holder.submit_many([TaskSpec("demo.echo", {"n": 1})])
        [claim] = holder.claim(ClaimOptions("w1"))
        waiter._command(("CLIENT", "SETNAME", "crank-waiter"), "name the connection")
        got: list[str] = []
        waiting = threading.Thread(
            target=lambda: got.extend(
                c.task.id for c in waiter.ack_and_claim([], ClaimOptions("w2", block_s=3600))
            ),
            daemon=True,  # left waiting for an hour if the test fails
        )
        waiting.start()
        deadline = time.monotonic() + 120
        while not _blocked_in_xreadgroup(admin, "crank-waiter"):
            assert time.monotonic() < deadline, "the second worker never waited for tasks"
            time.sleep(0.005)
        if give_back == "release":
            holder.release([claim])
        elif give_back == "recover":
            assert holder.recover("w1") == 1
        else:
            error = {"code": "DOWN", "message": "down"}
            assert holder.fail(claim, error, retryable=True) == "retrying"
        waiting.join(timeout=120)
        assert not waiting.is_alive(), "the waiting worker was not woken"
        assert got == [record.id]
        # the wake-up entries were read and deleted, not left to pile up
        assert admin.xlen("crank:wake") == 0
    finally:
        admin.close()
        holder.close()
        waiter.close()
