"""The worker-process loop: outcomes of tasks, heartbeats, signals, the entry point."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from crank.errors import BrokerError, UsageError
from crank.runtime import worker_process
from crank.runtime.brokers import open_broker
from crank.runtime.brokers.contract import ClaimOptions, TaskSpec
from crank.runtime.worker_process import WorkerLoop, WorkerProcessConfig, load_bindings
from crank.runtime.worker_reports import PARENT_GONE_SIGNAL, ProcessReport, ReportWriter

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    from crank.runtime.brokers.contract import Broker, Claim, TaskRecord

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "queue_workers"
MANIFEST = str(FIXTURES / "crank.yaml")


@pytest.fixture(autouse=True)
def fixture_worker_importable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(FIXTURES))


@pytest.fixture
def memory() -> Broker:
    return open_broker("memory://?retry_base_s=0.01&retry_max_s=0.02")


def config(broker_url: str = "memory://", **kw: Any) -> WorkerProcessConfig:
    base: dict[str, Any] = {"consumer": "test-worker", "block_s": 0.05, "grace_s": 5.0}
    base.update(kw)
    return WorkerProcessConfig(broker_url=broker_url, manifest_paths=(MANIFEST,), **base)


class Running:
    """A WorkerLoop on a thread (no signal handlers), stopped on exit."""

    def __init__(self, loop: WorkerLoop) -> None:
        self.loop = loop
        self.exit: list[int] = []
        self.thread = threading.Thread(target=lambda: self.exit.append(loop.run()))

    def __enter__(self) -> Running:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.request_stop()
        self.thread.join(timeout=120)
        assert not self.thread.is_alive()


def wait_final(broker: Broker, ids: list[str], timeout_s: float = 120.0) -> list[TaskRecord]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        records = [broker.get(i) for i in ids]
        if all(r is not None and r.done for r in records):
            return [r for r in records if r is not None]
        time.sleep(0.01)
    raise AssertionError(f"tasks not finished: {[broker.get(i) for i in ids]}")


def test_tasks_run_through_their_worker_host_and_results_are_acked(memory: Broker) -> None:
    finished: list[tuple[str, str]] = []
    loop = WorkerLoop(config(), broker=memory, on_finished=lambda c, s, d: finished.append((c, s)))
    records = memory.submit_many(
        [TaskSpec("fixture.echo", {"i": i}, meta={"request_id": f"r{i}"}) for i in range(40)]
    )
    with Running(loop):
        done = wait_final(memory, [r.id for r in records])
    assert [r.status for r in done] == ["succeeded"] * 40
    assert [r.result for r in done] == [
        {"echo": {"i": i}, "attempt": 1, "task_id": r.id} for i, r in enumerate(done)
    ]
    assert finished == [("fixture.echo", "succeeded")] * 40
    assert loop.processed == 40


def test_retryable_error_is_retried_then_dead_lettered_with_its_error(memory: Broker) -> None:
    loop = WorkerLoop(config(), broker=memory)
    poison = memory.submit(TaskSpec("fixture.poison", {}, max_attempts=3))
    good = memory.submit(TaskSpec("fixture.noop", {}))
    with Running(loop):
        dead, ok = wait_final(memory, [poison.id, good.id])
    assert ok.status == "succeeded"
    assert (dead.status, dead.attempts) == ("dead", 3)
    assert dead.error == {
        "code": "FLAKY",
        "message": "attempt 3 failed on purpose",
        "type": "CapabilityError",
    }


def test_a_crash_is_dead_lettered_at_once(memory: Broker) -> None:
    loop = WorkerLoop(config(), broker=memory)
    record = memory.submit(TaskSpec("fixture.broken", {}, max_attempts=5))
    with Running(loop):
        [dead] = wait_final(memory, [record.id])
    assert (dead.status, dead.attempts) == ("dead", 1)
    assert dead.error == {
        "code": "INTERNAL",
        "message": "unexpected crash in the handler",
        "type": "RuntimeError",
    }
    assert [d.id for d in memory.dead_letters()] == [record.id]


def test_a_declared_non_retryable_error_fails_the_task_without_a_dead_letter(
    memory: Broker,
) -> None:
    finished: list[tuple[str, str]] = []
    loop = WorkerLoop(
        config(), broker=memory, on_finished=lambda cap, status, _s: finished.append((cap, status))
    )
    record = memory.submit(TaskSpec("fixture.broken", {"declared": True}, max_attempts=5))
    with Running(loop):
        [failed] = wait_final(memory, [record.id])
    assert (failed.status, failed.attempts) == ("failed", 1)
    assert failed.error == {
        "code": "BAD_REQUEST",
        "message": "declared, not retryable",
        "type": "CapabilityError",
    }
    assert memory.dead_letters() == []
    assert memory.stats().dead == 0
    assert finished == [("fixture.broken", "failed")]


def test_invalid_input_fails_the_task_with_json_paths(memory: Broker) -> None:
    loop = WorkerLoop(config(), broker=memory)
    record = memory.submit(TaskSpec("fixture.sleep", {"seconds": -1}))
    with Running(loop):
        [failed] = wait_final(memory, [record.id])
    assert failed.status == "failed"
    assert failed.error is not None
    assert failed.error["code"] == "INVALID_INPUT"
    assert failed.error["errors"] == [
        {"path": "$.seconds", "message": "-1 is less than the minimum of 0"}
    ]
    assert memory.dead_letters() == []


def test_a_result_that_is_not_json_fails_its_own_task_only(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'q.db'}"
    broker = open_broker(url)
    loop = WorkerLoop(config(url), broker=open_broker(url))
    records = broker.submit_many(
        [TaskSpec("fixture.echo", {"i": 1}), TaskSpec("fixture.not_json", {}),
         TaskSpec("fixture.echo", {"i": 2})]
    )  # fmt: skip
    with Running(loop):
        first, bad, last = wait_final(broker, [r.id for r in records])
    assert (first.status, last.status) == ("succeeded", "succeeded")
    assert bad.status == "dead"
    assert bad.error is not None
    assert bad.error["code"] == "OUTPUT_NOT_JSON"


def test_only_the_configured_capabilities_are_claimed(memory: Broker) -> None:
    loop = WorkerLoop(config(capabilities=("fixture.noop",)), broker=memory)
    noop = memory.submit(TaskSpec("fixture.noop", {}))
    echo = memory.submit(TaskSpec("fixture.echo", {}))
    # oldest first: a loop that claimed the later no-op passed over the older echo
    later_noop = memory.submit(TaskSpec("fixture.noop", {}))
    with Running(loop):
        wait_final(memory, [noop.id, later_noop.id])
    record = memory.get(echo.id)
    assert record is not None
    assert record.status == "pending"


def test_a_broker_call_is_retried_after_failures_and_given_up_when_asked(
    memory: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    """The first try is a plain call; a failure goes on to the backoff (logged per
    retry, the same call made again) until it succeeds, or until ``give_up`` says so."""
    loop = WorkerLoop(config(reconnect_max_s=0.01), broker=memory)
    calls: list[int] = []

    def fails_twice() -> str:
        calls.append(1)
        if len(calls) <= 2:
            raise BrokerError("broker down")
        return "done"

    with caplog.at_level("WARNING", logger="crank.runtime.worker"):
        assert loop._with_retry("claim tasks", fails_twice, give_up=lambda: False) == "done"
    assert len(calls) == 3
    retries = [r.getMessage() for r in caplog.records if "retrying" in r.getMessage()]
    assert retries == [
        "broker unavailable, retrying (claim tasks, attempt 1): broker down",
        "broker unavailable, retrying (claim tasks, attempt 2): broker down",
    ]
    # and when it is over (only then: a call that never failed logs nothing)
    [back] = [r.getMessage() for r in caplog.records if "available again" in r.getMessage()]
    assert back.startswith("broker available again (claim tasks, after 3 attempts, ")

    calls.clear()
    with pytest.raises(BrokerError, match="broker down"):
        loop._with_retry("ack tasks", fails_twice, give_up=lambda: True)
    assert len(calls) == 1  # stopping: no second try

    assert loop._with_retry("ack tasks", lambda: 7, give_up=lambda: True) == 7


def test_unknown_capability_is_a_usage_error() -> None:
    with pytest.raises(UsageError) as info:
        WorkerLoop(config(capabilities=("fixture.nope",)), broker=open_broker("memory://"))
    assert info.value.message == "capabilities not declared by the given manifests: fixture.nope"


def test_the_same_capability_from_two_manifests_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="declared by"):
        load_bindings([MANIFEST, MANIFEST])


class _RenewalsSeen:
    """A real broker that notes each renewal (``extend_many``) the heartbeat makes:
    when it began and which of its tasks were still held, so a test can wait for
    the state "renewed after the first lease ran out" instead of for time."""

    def __init__(self, broker: Broker) -> None:
        self._broker = broker
        self._lock = threading.Lock()
        self._renewals: list[tuple[float, frozenset[str]]] = []

    def extend_many(self, claims: Sequence[Claim], visibility_timeout_s: float) -> list[bool]:
        began = time.time()  # the brokers' lease clock
        held: list[bool] = self._broker.extend_many(claims, visibility_timeout_s)
        kept = frozenset(c.task.id for c, ok in zip(claims, held, strict=True) if ok)
        with self._lock:
            self._renewals.append((began, kept))
        return held

    def wait_for_renewal(self, task_ids: set[str], *, begun_after: float) -> None:
        """Until one renewal that began after ``begun_after`` held every task of
        ``task_ids``; fails if none does within a generous deadline."""
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with self._lock:
                if any(began > begun_after and task_ids <= kept for began, kept in self._renewals):
                    return
            time.sleep(0.005)
        raise AssertionError(f"the heartbeat did not renew {sorted(task_ids)} after their lease")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._broker, name)


def _claimed_by_now(broker: Broker, task_ids: list[str]) -> float:
    """Waits until every task of ``task_ids`` is claimed; returns the time then (on
    the brokers' lease clock), so each was claimed at or before it."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        now = time.time()
        records = [broker.get(i) for i in task_ids]
        if all(r is not None and r.status == "running" for r in records):
            return now
        time.sleep(0.005)
    raise AssertionError(f"tasks not claimed: {[broker.get(i) for i in task_ids]}")


#: the lease of these tests; the heartbeat renews it every ``HEARTBEAT_S``.
LEASE_S = 1.5
HEARTBEAT_S = 0.1


def _thief_claims(broker: Broker) -> list[Claim]:
    return broker.claim(ClaimOptions("thief", limit=10, visibility_timeout_s=LEASE_S))


@pytest.mark.slow
def test_heartbeat_keeps_a_long_task_from_being_redelivered(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'q.db'}"
    broker = open_broker(url)
    renewals = _RenewalsSeen(open_broker(url))
    loop = WorkerLoop(
        config(url, visibility_timeout_s=LEASE_S, heartbeat_s=HEARTBEAT_S),
        broker=renewals,  # type: ignore[arg-type]
    )
    gate = tmp_path / "gate"
    record = broker.submit(TaskSpec("fixture.wait_for_file", {"path": str(gate)}))
    with Running(loop):
        try:
            claimed_by = _claimed_by_now(broker, [record.id])
            # Past its first lease, held only because the heartbeat renewed it: a
            # thief that comes right after that renewal gets nothing.
            renewals.wait_for_renewal({record.id}, begun_after=claimed_by + LEASE_S)
            assert _thief_claims(broker) == []
        finally:
            gate.touch()
        [done] = wait_final(broker, [record.id])
    assert (done.status, done.attempts) == ("succeeded", 1)


def _wait_for_exits(exits: list[int], count: int) -> None:
    """Until ``hard_exit`` was called ``count`` times (it records, the test goes on)."""
    deadline = time.monotonic() + 120
    while len(exits) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    assert exits == [1] * count


def _assert_given_back(broker: Broker, task_id: str) -> None:
    """Pending again and its attempt not counted: released, not failed or recovered."""
    record = broker.get(task_id)
    assert record is not None
    assert (record.status, record.attempts) == ("pending", 0)


def _wait_until_started(loop: WorkerLoop, task_id: str) -> None:
    """Until the loop has started running ``task_id``'s handler (not just claimed it):
    it records the task's deadline right before the handler runs, after the last
    look at the stop signal, so from then on the task runs to its end."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        with loop._held_lock:
            held = loop._held.get(task_id)
        if held is not None and held[1] is not None:
            return
        time.sleep(0.005)
    raise AssertionError(f"task {task_id} did not start")


def _batches_then_a_long_one(broker: Broker, tmp_path: Path, tail: int) -> list[TaskRecord]:
    """Claims with batch_size 2: one quick task (a first claim asks for one), then a
    quick one and one that runs until the test creates ``tmp_path / "gate"``, during
    which the next two quick ones are prefetched (the batch before was fast and
    full); then ``tail`` more. The quick ones wait for a file that exists. One
    capability, so every backend claims them in this order."""
    there, gate = tmp_path / "there", tmp_path / "gate"
    there.touch()
    paths = [there, there, gate, there, there] + [there] * tail
    return broker.submit_many([TaskSpec("fixture.wait_for_file", {"path": str(p)}) for p in paths])


def _batching_config(broker_url: str, **kw: Any) -> WorkerProcessConfig:
    # Every batch counts as fast (so the next one is prefetched) and full claims
    # (batch_size) are asked for, however slowly the machine runs the quick tasks.
    return config(broker_url, batch_size=2, batch_target_s=600, prefetch_below_s=600, **kw)


@pytest.mark.slow
def test_prefetched_tasks_go_back_when_the_batch_before_them_runs_long(
    broker_url: str, tmp_path: Path
) -> None:
    # A prefetched batch waits for the batch before it: when one of that batch's tasks
    # runs past a heartbeat, the prefetched tasks go back to the queue for another
    # process, instead of waiting (held, shown running) until the long one ends.
    broker = open_broker(broker_url)
    loop = WorkerLoop(_batching_config(broker_url, heartbeat_s=HEARTBEAT_S), broker=broker)
    records = _batches_then_a_long_one(broker, tmp_path, tail=0)
    prefetched = [records[3].id, records[4].id]
    with Running(loop):
        try:
            _wait_until_started(loop, records[2].id)
            _wait_for_status(broker, prefetched, "pending")
            thief = _thief_claims(broker)
            assert sorted(c.task.id for c in thief) == sorted(prefetched)
            broker.release(thief)  # the loop runs them once it is free again
        finally:
            (tmp_path / "gate").touch()
        done = wait_final(broker, [r.id for r in records])
    assert [(d.status, d.attempts) for d in done] == [("succeeded", 1)] * 5
    assert loop.processed == 5
    broker.close()


def _wait_for_status(broker: Broker, task_ids: list[str], status: str) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        records = [broker.get(i) for i in task_ids]
        if all(r is not None and r.status == status for r in records):
            return
        time.sleep(0.005)
    raise AssertionError(f"not all {status}: {[broker.get(i) for i in task_ids]}")


@pytest.mark.slow
def test_stopping_during_a_prefetched_batch_gives_the_prefetch_back(
    broker_url: str, tmp_path: Path
) -> None:
    broker = open_broker(broker_url)
    loop = WorkerLoop(_batching_config(broker_url, grace_s=600), broker=broker)
    records = _batches_then_a_long_one(broker, tmp_path, tail=1)
    with Running(loop):
        try:
            _wait_until_started(loop, records[2].id)
            loop.request_stop()
        finally:
            (tmp_path / "gate").touch()
    assert loop.processed == 3
    after = [broker.get(r.id) for r in records]
    assert [(a.status, a.attempts) for a in after if a is not None] == [
        ("succeeded", 1),
        ("succeeded", 1),
        ("succeeded", 1),  # the running task finished within the grace period
        ("pending", 0),  # the prefetched batch, given back unrun
        ("pending", 0),
        ("pending", 0),  # never claimed
    ]
    # given back means claimable by anyone at once, not after the visibility timeout
    assert len(broker.claim(ClaimOptions("other", limit=10, visibility_timeout_s=30))) == 3
    broker.close()


class _StopDuringClaim:
    """A real broker whose loop is told to stop while its claim is on the way back."""

    def __init__(self, broker: Broker) -> None:
        self._broker = broker
        self.loop: WorkerLoop | None = None

    def ack_and_claim(self, *args: Any, **kwargs: Any) -> list[Claim]:
        got: list[Claim] = self._broker.ack_and_claim(*args, **kwargs)
        if got and self.loop is not None:
            self.loop.request_stop()  # SIGTERM arrives as the claim returns
        return got

    def __getattr__(self, name: str) -> Any:
        return getattr(self._broker, name)


def test_tasks_claimed_as_the_stop_comes_are_given_back_unrun(memory: Broker) -> None:
    records = memory.submit_many([TaskSpec("fixture.noop", {}) for _ in range(3)])
    stopping = _StopDuringClaim(memory)
    loop = WorkerLoop(config(), broker=stopping)  # type: ignore[arg-type]
    stopping.loop = loop
    with Running(loop) as running:
        running.thread.join(timeout=120)
    assert loop.processed == 0
    after = [memory.get(r.id) for r in records]
    assert [(a.status, a.attempts) for a in after if a is not None] == [("pending", 0)] * 3
    # given back: claimable by anyone at once, not after the visibility timeout
    assert len(memory.claim(ClaimOptions("other", limit=10))) == 3


def test_the_grace_timer_exists_before_the_stop_can_be_seen(memory: Broker) -> None:
    # A loop that sees the stop at once cancels the grace timer on its way out; were the
    # timer made after the stop was visible, it could miss it and end the process later.
    exits: list[int] = []
    loop = WorkerLoop(config(grace_s=600), broker=memory, hard_exit=exits.append)
    timer_when_stop_was_set: list[object] = []

    class WatchedEvent(threading.Event):
        def set(self) -> None:
            timer_when_stop_was_set.append(loop._grace_timer)
            super().set()

    loop.stop_event = WatchedEvent()
    loop.request_stop()
    assert timer_when_stop_was_set[0] is not None
    # stopped before it started: run() returns at once and cancels the timer
    assert loop.run() == 0
    assert loop._grace_timer is not None and loop._grace_timer.finished.is_set()
    assert exits == []


def test_slow_tasks_are_shared_between_workers_not_hoarded_by_one(
    memory: Broker, tmp_path: Path
) -> None:
    # batch_size 8 would let the first worker to claim take all four tasks while the
    # other idles; claims sized by recent task time take one at a time. The tasks run
    # until the test opens the gate, so how fast either loop starts does not matter.
    gate = tmp_path / "gate"
    records = memory.submit_many(
        [TaskSpec("fixture.wait_for_file", {"path": str(gate)}) for _ in range(4)]
    )
    a = WorkerLoop(config(consumer="a", batch_size=8), broker=memory)
    b = WorkerLoop(config(consumer="b", batch_size=8), broker=memory)
    with Running(a), Running(b):
        try:
            _wait_until_running_a_task(a)
            _wait_until_running_a_task(b)
        finally:
            gate.touch()
        wait_final(memory, [r.id for r in records])
    assert a.processed + b.processed == 4
    assert a.processed >= 1 and b.processed >= 1


def _wait_until_running_a_task(loop: WorkerLoop) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        with loop._held_lock:
            if any(started is not None for _, started in loop._held.values()):
                return
        time.sleep(0.005)
    raise AssertionError(f"worker {loop.config.consumer} runs no task")


def test_claims_grow_to_the_batch_size_for_quick_tasks_and_shrink_for_slow_ones() -> None:
    loop = WorkerLoop(config(batch_size=50, batch_target_s=0.05))
    assert loop._next_limit(["fixture.noop"]) == 1  # nothing known: one task
    loop._observe("fixture.noop", 0.001, 100)  # 10 µs per task
    assert loop._next_limit(["fixture.noop"]) == 50
    for _ in range(10):
        loop._observe("fixture.noop", 2.0, 1)  # now 2 s per task
    assert loop._next_limit(["fixture.noop"]) == 1
    loop._observe("fixture.noop", 0.0, 0)  # an empty batch says nothing
    assert loop._next_limit(["fixture.noop"]) == 1


def test_claim_sizes_are_learned_per_capability() -> None:
    loop = WorkerLoop(config(batch_size=50, batch_target_s=0.05))
    loop._observe("fixture.noop", 0.001, 100)  # quick
    loop._observe("fixture.wait_for_file", 20.0, 1)  # slow
    assert loop._claim_size("fixture.noop") == 50
    assert loop._claim_size("fixture.wait_for_file") == 1
    assert loop._claim_size("fixture.echo") == 1  # never run here
    # a claim asks for the most any of them takes; what it brings beyond each one's
    # own size goes back (below)
    assert loop._next_limit(["fixture.noop", "fixture.wait_for_file"]) == 50
    assert loop._next_limit(["fixture.wait_for_file", "fixture.echo"]) == 1


def test_a_claim_keeps_of_each_capability_only_its_claim_size(
    broker_url: str, tmp_path: Path
) -> None:
    broker = open_broker(broker_url)
    gate = str(tmp_path / "gate")
    quick = broker.submit_many([TaskSpec("fixture.noop", {}) for _ in range(5)])
    slow = broker.submit_many([TaskSpec("fixture.wait_for_file", {"path": gate}) for _ in range(4)])
    loop = WorkerLoop(config(broker_url, batch_size=32), broker=broker)
    loop.workers.load()
    loop._observe("fixture.noop", 0.001, 100)  # quick ones known; slow ones never run here
    claims, unacked = loop._claim([])
    assert unacked == []
    # (Redis reads one stream per capability, in turns: the order of the two varies)
    kept = sorted(c.task.id for c in claims)
    assert kept == sorted([r.id for r in quick] + [slow[0].id])
    # the other slow ones are back in the queue at once, for any process to take
    statuses = [getattr(broker.get(r.id), "status", None) for r in slow[1:]]
    assert statuses == ["pending"] * 3
    other = broker.claim(ClaimOptions("other", capabilities=("fixture.wait_for_file",), limit=10))
    assert sorted(c.task.id for c in other) == sorted(r.id for r in slow[1:])
    broker.release(other)
    loop._release(claims)
    loop.workers.stop()
    broker.close()


def test_slow_tasks_after_quick_ones_are_not_held_by_the_process_that_ran_the_quick_ones(
    memory: Broker, tmp_path: Path
) -> None:
    # The claim size of the quick capability (32) must not be the slow one's: the one
    # process that ran the quick tasks would hold all four slow ones (shown running)
    # while another idles.
    gate = tmp_path / "gate"
    quick = memory.submit_many([TaskSpec("fixture.noop", {}) for _ in range(40)])
    slow = memory.submit_many(
        [TaskSpec("fixture.wait_for_file", {"path": str(gate)}) for _ in range(4)]
    )
    a = WorkerLoop(config(consumer="a", batch_size=32), broker=memory)
    b = WorkerLoop(config(consumer="b", batch_size=32), broker=memory)
    with Running(a), contextlib.ExitStack() as later:
        try:
            _wait_until_running_a_task(a)
            wait_final(memory, [r.id for r in quick])
            statuses = sorted(getattr(memory.get(r.id), "status", "") for r in slow)
            assert statuses == ["pending", "pending", "pending", "running"]
            later.enter_context(Running(b))  # stopped after the gate opens
            _wait_until_running_a_task(b)
        finally:
            gate.touch()
        wait_final(memory, [r.id for r in slow])
    assert b.processed >= 1


def test_tasks_waiting_behind_a_long_one_go_back_for_another_process(
    broker_url: str, tmp_path: Path
) -> None:
    # A quick capability (its tasks find their file at once) whose one task hangs: the
    # tasks claimed with it must not wait for it (the heartbeat gives them back), nor
    # the results finished before it (the heartbeat acks them).
    broker = open_broker(broker_url)
    here, gate = tmp_path / "here", tmp_path / "gate"
    here.touch()
    before = broker.submit_many(
        [TaskSpec("fixture.wait_for_file", {"path": str(here)}) for _ in range(40)]
    )
    hung = broker.submit(TaskSpec("fixture.wait_for_file", {"path": str(gate)}))
    behind = broker.submit_many(
        [TaskSpec("fixture.wait_for_file", {"path": str(here)}) for _ in range(5)]
    )
    # full claims (batch_size) whatever the machine's speed, never a prefetch: the long
    # task and the five after it come in one batch
    a = WorkerLoop(
        config(
            broker_url,
            consumer="a",
            heartbeat_s=HEARTBEAT_S,
            batch_size=50,
            batch_target_s=600,
            prefetch_below_s=0,
        ),
        broker=broker,
    )
    # a second process's broker connection (the memory broker lives in this one object)
    other = broker if broker_url.startswith("memory:") else open_broker(broker_url)
    b = WorkerLoop(config(broker_url, consumer="b"), broker=other)
    try:
        with Running(a):
            try:
                _wait_until_started(a, hung.id)
                # acked while the long one runs, though it came in their batch
                assert {r.status for r in wait_final(broker, [r.id for r in before])} == {
                    "succeeded"
                }
                # given back, they are run by another process while the long one runs
                with Running(b):
                    finished = wait_final(broker, [r.id for r in behind])
                assert {r.status for r in finished} == {"succeeded"}
                assert b.processed == len(behind)
                record = broker.get(hung.id)
                assert record is not None and record.status == "running"
            finally:
                gate.touch()
            wait_final(broker, [hung.id])
        assert a.processed == len(before) + 1
    finally:
        other.close()
        broker.close()


def test_results_before_a_hung_quick_task_are_acked_long_before_the_next_beat(
    memory: Broker, tmp_path: Path
) -> None:
    # A capability known to be quick (no look ahead: results wait for the flush) whose
    # task hangs: the results finished before it waited for the next heartbeat, a third
    # of the visibility timeout (10 s by default), and their sync callers with them.
    # Here the heartbeat never comes while the test waits.
    here, gate = tmp_path / "here", tmp_path / "gate"
    here.touch()
    before = memory.submit_many(
        [TaskSpec("fixture.wait_for_file", {"path": str(here)}) for _ in range(5)]
    )
    hung = memory.submit(TaskSpec("fixture.wait_for_file", {"path": str(gate)}))
    loop = WorkerLoop(
        config(
            heartbeat_s=3600,
            visibility_timeout_s=7200,
            batch_size=50,
            batch_target_s=600,
            prefetch_below_s=0,
        ),
        broker=memory,
    )
    loop._observe("fixture.wait_for_file", 0.0001, 100)  # known to be quick
    with Running(loop):
        try:
            _wait_until_started(loop, hung.id)
            records = wait_final(memory, [r.id for r in before], timeout_s=120)
            assert {r.status for r in records} == {"succeeded"}
            record = memory.get(hung.id)
            assert record is not None and record.status == "running"
        finally:
            gate.touch()
        wait_final(memory, [hung.id])
    assert loop.processed == len(before) + 1


class CollectedReports(ReportWriter):
    """The reports a loop writes, kept in a list (no pipe)."""

    def __init__(self) -> None:
        super().__init__(None)
        self.reports: list[ProcessReport] = []

    def write(self, report: ProcessReport) -> bool:
        self.reports.append(report)
        return True


def test_reports_say_how_many_tasks_run(memory: Broker, tmp_path: Path) -> None:
    # what the supervisor reads to stop an idle process before a busy one
    reports = CollectedReports()
    loop = WorkerLoop(config(health_interval_s=0.02), broker=memory, reports=reports)
    gate = tmp_path / "gate"
    record = memory.submit(TaskSpec("fixture.wait_for_file", {"path": str(gate)}))

    def until_one_says(running: int, after: int) -> int:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            seen = [r.running for r in reports.reports[after:]]
            if running in seen:
                return after + seen.index(running)
            time.sleep(0.01)
        raise AssertionError(f"no report said {running} running")

    with Running(loop):
        try:
            _wait_until_started(loop, record.id)
            busy_at = until_one_says(1, 0)
        finally:
            gate.touch()
        wait_final(memory, [record.id])
        until_one_says(0, busy_at)


@pytest.mark.slow
def test_grace_period_over_releases_the_running_task(
    memory: Broker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="crank.runtime.worker")
    exits: list[int] = []
    loop = WorkerLoop(config(grace_s=0.2), broker=memory, hard_exit=exits.append)
    # the task runs until the test opens the gate, so it cannot end within the grace
    gate = tmp_path / "gate"
    record = memory.submit(TaskSpec("fixture.wait_for_file", {"path": str(gate)}))
    thread = threading.Thread(target=loop.run)
    thread.start()
    try:
        _wait_until_started(loop, record.id)
        loop.request_stop()
        _wait_for_exits(exits, 1)
        _assert_given_back(memory, record.id)
        assert (
            f"task {record.id} (fixture.wait_for_file) was cut short within its deadline: "
            "given back, its attempt not counted, it runs again from the start"
        ) in caplog.messages
    finally:
        gate.touch()  # the handler ends; hard_exit did not end this process
        thread.join(timeout=120)


@pytest.mark.slow
def test_grace_period_over_fails_a_task_run_past_its_deadline_and_counts_it(
    memory: Broker, tmp_path: Path
) -> None:
    # Given back for free, a task whose handler always outlives its deadline and the
    # grace (a stop every time it runs: a liveness probe restarting the stuck process)
    # would come back for ever, its attempts never counted, never a dead letter.
    exits: list[int] = []
    loop = WorkerLoop(config(grace_s=0.2), broker=memory, hard_exit=exits.append)
    gate = tmp_path / "gate"
    # its deadline (0.01 s after it starts) is over before the grace (0.2 s after the stop)
    record = memory.submit(TaskSpec("fixture.wait_for_file", {"path": str(gate)}, timeout_s=0.01))
    thread = threading.Thread(target=loop.run)
    thread.start()
    try:
        _wait_until_started(loop, record.id)
        loop.request_stop()
        _wait_for_exits(exits, 1)
        after = memory.get(record.id)
        assert after is not None and after.error is not None
        assert (after.status, after.attempts, after.error["code"]) == ("retrying", 1, "TIMEOUT")
        assert after.error["message"].startswith(
            f"task {record.id} (fixture.wait_for_file) still ran "
        )
        assert after.error["message"].endswith(
            " s past its deadline when its worker process stopped (grace period over)"
        )
    finally:
        gate.touch()  # the handler ends; hard_exit did not end this process
        thread.join(timeout=120)


@pytest.mark.slow
def test_grace_period_over_gives_back_a_claim_the_loop_had_not_recorded(
    memory: Broker, tmp_path: Path
) -> None:
    exits: list[int] = []
    loop = WorkerLoop(config(grace_s=0.2), broker=memory, hard_exit=exits.append)
    gate = tmp_path / "gate"
    running = memory.submit(TaskSpec("fixture.wait_for_file", {"path": str(gate)}))
    # a task of a capability this loop never claims, claimed under the loop's name: a
    # claim whose answer arrived as the grace ran out, before the loop recorded it
    stray = memory.submit(TaskSpec("elsewhere.thing", {}))
    thread = threading.Thread(target=loop.run)
    thread.start()
    try:
        _wait_until_started(loop, running.id)
        on_its_way = ClaimOptions("test-worker", ("elsewhere.thing",), visibility_timeout_s=600)
        assert [c.task.id for c in memory.claim(on_its_way)] == [stray.id]
        loop.request_stop()
        _wait_for_exits(exits, 1)
        # claimable now, not after its 600 s visibility timeout
        again = memory.claim(ClaimOptions("next", ("elsewhere.thing",), visibility_timeout_s=60))
        assert [c.task.id for c in again] == [stray.id]
    finally:
        gate.touch()  # the handler ends; hard_exit did not end this process
        thread.join(timeout=120)


def _sqlite_loop_running_a_task(
    path: Path,
) -> tuple[Broker, WorkerLoop, list[int], TaskRecord, Path, threading.Thread]:
    """A loop (600 s of grace, ``hard_exit`` recorded) on a SQLite queue at ``path``,
    on a thread, running a task that ends when the test creates the gate file."""
    url = f"sqlite:///{path}"
    broker = open_broker(url)
    exits: list[int] = []
    loop = WorkerLoop(config(url, grace_s=600), broker=broker, hard_exit=exits.append)
    gate = path.parent / "gate"
    record = broker.submit(TaskSpec("fixture.wait_for_file", {"path": str(gate)}))
    thread = threading.Thread(target=loop.run)
    thread.start()
    _wait_until_started(loop, record.id)
    return broker, loop, exits, record, gate, thread


@pytest.mark.slow
def test_a_second_signal_inside_a_broker_transaction_still_gives_the_task_back(
    tmp_path: Path,
) -> None:
    # A signal handler runs on the main thread between two of its bytecodes, wherever it
    # was: here inside a transaction on the loop's own SQLite connection. Broker work done
    # in the handler would run inside that transaction (SQLite refuses a nested BEGIN) and
    # leave the task running under a worker about to exit, until its visibility timeout.
    broker, loop, exits, record, gate, thread = _sqlite_loop_running_a_task(tmp_path / "q.db")
    try:
        loop.request_stop(signal.SIGTERM)  # the first signal: the running task has 600 s
        with broker._write():  # type: ignore[attr-defined]
            loop.request_stop(signal.SIGTERM)  # the second lands mid-transaction
        _wait_for_exits(exits, 1)
        _assert_given_back(broker, record.id)
    finally:
        gate.touch()  # the handler ends; hard_exit did not end this process
        thread.join(timeout=120)
        broker.close()


@pytest.mark.slow
def test_a_stop_that_cannot_wait_exits_even_when_the_broker_does_not_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(worker_process, "STOP_NOW_LIMIT_S", 0.5)
    path = tmp_path / "q.db"
    broker, loop, exits, record, gate, thread = _sqlite_loop_running_a_task(path)
    # another process's writer that does not let go: giving back waits for the write lock
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        loop.request_stop(signal.SIGTERM)
        loop.request_stop(signal.SIGTERM)
        deadline = time.monotonic() + 120
        while not exits and time.monotonic() < deadline:
            time.sleep(0.01)
        assert exits == [1]  # exited while the broker still did not answer
        # read beside the broker: the loop's connection queues behind the lock too
        with contextlib.closing(sqlite3.connect(path)) as reader:
            left = reader.execute("SELECT status FROM tasks WHERE id = ?", (record.id,)).fetchall()
        assert left == [("running",)]  # comes back after its visibility timeout
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
        gate.touch()
        thread.join(timeout=120)
    # the lock let go, the giving back goes on and ends with the exit it would have made
    _wait_for_exits(exits, 2)
    broker.close()


# -- the process entry point ---------------------------------------------------------


@pytest.fixture
def env() -> Iterator[dict[str, str]]:
    yield {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(FIXTURES), os.environ.get("PYTHONPATH", "")]),
    }


def test_entry_point_reports_a_bad_manifest_without_a_traceback(
    tmp_path: Path, env: dict[str, str]
) -> None:
    missing = tmp_path / "nope.yaml"
    proc = subprocess.run(
        [sys.executable, "-m", "crank.runtime.worker_process", "--broker", "memory://",
         "--manifest", str(missing)],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode != 0
    assert proc.stderr.startswith("error: ")
    assert str(missing) in proc.stderr
    assert "Traceback" not in proc.stderr


def test_entry_point_refuses_a_manifest_whose_calls_would_all_fail(
    tmp_path: Path, env: dict[str, str]
) -> None:
    """A worker process started on its own (a worker pod) checks what ``crank run`` checks:
    deprecated ids that route in a loop fail every call of them."""
    manifest = tmp_path / "crank.yaml"
    loop = (
        "deprecated:\n"
        "  - {id: queue.loop_a, replaced_by: [queue.loop_b], sunset: 2099-12-31}\n"
        "  - {id: queue.loop_b, replaced_by: [queue.loop_a], sunset: 2099-12-31}\n"
    )
    manifest.write_text(Path(MANIFEST).read_text().rstrip("\n") + "\n" + loop)
    line = len(manifest.read_text().splitlines()) - 1
    proc = subprocess.run(
        [sys.executable, "-m", "crank.runtime.worker_process", "--broker", "memory://",
         "--manifest", str(manifest)],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        f"error: {manifest}:{line}:10 CRK103 deprecated capability 'queue.loop_a' routes back "
        "to itself: queue.loop_a -> queue.loop_b -> queue.loop_a (and 1 more); every call of "
        "it would fail",
        "  hint: every chain of replacements must end at a live capability",
    ]


def test_entry_point_reports_a_bad_broker_url(env: dict[str, str]) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "crank.runtime.worker_process", "--broker", "amqp://x",
         "--manifest", MANIFEST],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[:2] == [
        "error: broker URL 'amqp://x' cannot be used: unknown scheme 'amqp'",
        "  hint: use sqlite:///relative/path.db, sqlite:////absolute/path.db or "
        "redis://host:port/db (memory:// lives in one process: tests only)",
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--batch-size", "0"], "argument --batch-size: '0' is not a whole number 1 or more"),
        (
            ["--visibility-timeout", "-5"],
            "argument --visibility-timeout: '-5' is not a number above 0",
        ),
        (
            ["--visibility-timeout", "nan"],
            "argument --visibility-timeout: 'nan' is not a number above 0",
        ),
        (["--grace", "-1"], "argument --grace: '-1' is not a number 0 or more"),
        (
            ["--visibility-timeout", "5", "--heartbeat", "5"],
            "--heartbeat 5 must be shorter than --visibility-timeout 5 (a third of it is the "
            "default)",
        ),
    ],
)
def test_entry_point_refuses_numbers_that_would_break_delivery(
    env: dict[str, str], args: list[str], message: str
) -> None:
    """A batch of 0 never takes a task; a lease that runs out at once (or is renewed after
    it ran out) hands a running task to a second worker."""
    proc = subprocess.run(
        [sys.executable, "-m", "crank.runtime.worker_process", "--broker", "memory://",
         "--manifest", MANIFEST, *args],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2
    assert (
        proc.stderr.splitlines()[-1] == f"python -m crank.runtime.worker_process: error: {message}"
    )


def _http_modules_after_importing(module: str) -> list[str]:
    """The HTTP stack's modules a fresh interpreter holds once ``module`` is imported."""
    probe = (
        f"import sys, {module}; print(' '.join(sorted(m for m in sys.modules "
        "if m.split('.')[0] in ('starlette', 'uvicorn', 'httpx') "
        "or m.split('.')[:3] == ['crank', 'runtime', 'http'])))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout.split()


def test_a_worker_process_does_not_load_the_http_stack() -> None:
    assert _http_modules_after_importing("crank.runtime.worker_process") == []
    # nor does the main process of several HTTP processes (it supervises)
    assert _http_modules_after_importing("crank.runtime.serve") == []
    # the probe sees them where they belong
    assert "starlette" in _http_modules_after_importing("crank.runtime.http.server")


@pytest.mark.slow
def test_entry_point_serves_until_sigterm(tmp_path: Path, env: dict[str, str]) -> None:
    url = f"sqlite:///{tmp_path / 'q.db'}"
    broker = open_broker(url)
    proc = subprocess.Popen(
        [sys.executable, "-m", "crank.runtime.worker_process", "--broker", url,
         "--manifest", MANIFEST, "--consumer", "cli-worker", "--block", "0.1"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        record = broker.submit(TaskSpec("fixture.echo", {"hello": "world"}))
        [done] = wait_final(broker, [record.id], timeout_s=30)
        assert done.result == {"echo": {"hello": "world"}, "attempt": 1, "task_id": record.id}
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    assert "worker cli-worker stopped after 1 tasks" in stderr


def _wait_for_line(log_path: Path, text: str, alive: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if text in log_path.read_text():
            return
        assert alive(), log_path.read_text()
        time.sleep(0.01)
    raise AssertionError(f"{text!r} not logged:\n{log_path.read_text()}")


def _worker_argv(url: str) -> list[str]:
    return [sys.executable, "-m", "crank.runtime.worker_process", "--broker", url,
            "--manifest", MANIFEST, "--block", "0.1", "--grace", "600"]  # fmt: skip


def _submit_hold(url: str, tmp_path: Path) -> tuple[Broker, TaskRecord, Path, Path]:
    """A task that runs until ``gate`` exists, and the file it leaves once it runs."""
    broker = open_broker(url)
    started, gate = tmp_path / "started", tmp_path / "gate"
    record = broker.submit(
        TaskSpec("fixture.wait_for_file", {"path": str(gate), "started": str(started)})
    )
    return broker, record, started, gate


def _wait_for_file(path: Path, log_path: Path, alive: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 120
    while not path.exists():
        assert alive() and time.monotonic() < deadline, log_path.read_text()
        time.sleep(0.01)


@contextlib.contextmanager
def _worker_running_a_held_task(
    tmp_path: Path, env: dict[str, str]
) -> Iterator[tuple[Broker, TaskRecord, subprocess.Popen[str], Path]]:
    """A worker process (SQLite) running a task that waits for its gate: the broker, the
    task, the process and its log; the gate is opened and the process ended after."""
    url = f"sqlite:///{tmp_path / 'q.db'}"
    broker, record, started, gate = _submit_hold(url, tmp_path)
    log_path = tmp_path / "worker.log"
    with log_path.open("w") as log_file:
        proc = subprocess.Popen(
            _worker_argv(url), env=env, stdout=log_file, stderr=subprocess.STDOUT, text=True
        )
    try:
        _wait_for_file(started, log_path, lambda: proc.poll() is None)
        yield broker, record, proc, gate
    finally:
        gate.touch()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        broker.close()


@pytest.mark.slow
def test_a_second_sigterm_stops_at_once_and_gives_the_running_task_back(
    tmp_path: Path, env: dict[str, str]
) -> None:
    log_path = tmp_path / "worker.log"
    with _worker_running_a_held_task(tmp_path, env) as (broker, record, proc, _):
        proc.send_signal(signal.SIGTERM)
        _wait_for_line(
            log_path, "stopping on SIGTERM: finishing the running task", lambda: proc.poll() is None
        )
        proc.send_signal(signal.SIGTERM)  # once the first was handled: not merged into one
        proc.wait(timeout=120)
        assert "stopping now (a second stop signal)" in log_path.read_text()
        after = broker.get(record.id)
        assert after is not None
        assert (proc.returncode, after.status, after.attempts) == (1, "pending", 0)


@pytest.mark.slow
def test_a_parent_gone_signal_while_the_parent_lives_is_no_stop(
    tmp_path: Path, env: dict[str, str]
) -> None:
    # The kernel sends it when the *thread* that started the process exits: the
    # supervisor's monitor thread, as the pool stops. Taken for a stop, it made the
    # supervisor's one SIGTERM a second signal, which cut the running task off.
    log_path = tmp_path / "worker.log"
    with _worker_running_a_held_task(tmp_path, env) as (broker, record, proc, gate):
        proc.send_signal(PARENT_GONE_SIGNAL)  # this process, its parent, lives on
        proc.send_signal(signal.SIGTERM)  # handled after it (signals run by number)
        _wait_for_line(
            log_path, "stopping on SIGTERM: finishing the running task", lambda: proc.poll() is None
        )
        gate.touch()
        proc.wait(timeout=120)
        log = log_path.read_text()
        assert "stopping now" not in log, log
        assert "the supervisor is gone" not in log, log
        after = broker.get(record.id)
        assert after is not None
        assert (proc.returncode, after.status, after.attempts) == (0, "succeeded", 1), log


#: a parent that starts the worker as the supervisor does (``die_with_parent``), says
#: its pid, and waits to be killed.
PARENT = (
    "import subprocess, sys\n"
    "from crank.runtime.supervisor import die_with_parent\n"
    "child = subprocess.Popen(\n"
    "    sys.argv[1:], preexec_fn=die_with_parent(), stderr=subprocess.STDOUT\n"
    ")\n"
    "print(child.pid, file=sys.stderr, flush=True)\n"
    "sys.stdin.read()\n"
)


def _exited(pid: int) -> bool:
    """``pid`` (not a child of this process) has exited; a zombie counts."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


@pytest.mark.slow
def test_the_parent_gone_signal_twice_is_one_graceful_stop(
    tmp_path: Path, env: dict[str, str]
) -> None:
    url = f"sqlite:///{tmp_path / 'q.db'}"
    broker, record, started, gate = _submit_hold(url, tmp_path)
    log_path = tmp_path / "worker.log"
    with log_path.open("w") as log_file:
        parent = subprocess.Popen(
            [sys.executable, "-c", PARENT, *_worker_argv(url)],
            env=env, stdin=subprocess.PIPE, stdout=log_file, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
    assert parent.stderr is not None
    worker = int(parent.stderr.readline())
    try:
        _wait_for_file(started, log_path, lambda: not _exited(worker))
        parent.kill()  # as kill -9 of crank run: the kernel tells the worker
        parent.wait()
        _wait_for_line(log_path, "the supervisor is gone: stopping", lambda: not _exited(worker))
        # the kernel may send it again as the orphan is handed on: the same stop
        os.kill(worker, PARENT_GONE_SIGNAL)
        _wait_for_line(
            log_path, "told again that the supervisor is gone", lambda: not _exited(worker)
        )
        gate.touch()
        deadline = time.monotonic() + 120
        while not _exited(worker):
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.01)
    finally:
        gate.touch()
        with contextlib.suppress(ProcessLookupError):
            if not _exited(worker):
                os.kill(worker, signal.SIGKILL)
        parent.kill()
        parent.communicate()  # and closes its pipes
    log = log_path.read_text()
    assert "stopping now" not in log, log
    assert "stopped after 1 tasks" in log, log
    after = broker.get(record.id)
    assert after is not None
    assert (after.status, after.attempts) == ("succeeded", 1), log
    broker.close()


def test_task_finished_hook_counts_tasks_when_metrics_are_on(
    memory: Broker, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from prometheus_client import CollectorRegistry, multiprocess

    from crank.plugins import reset_plugin_manager
    from crank.runtime.task_metrics import close_files
    from crank.runtime.worker_process import task_finished_hook

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    reset_plugin_manager()
    try:
        hook = task_finished_hook()
        assert hook is not None
        loop = WorkerLoop(config(), broker=memory, on_finished=hook)
        records = memory.submit_many([TaskSpec("fixture.noop", {}) for _ in range(3)])
        with Running(loop):
            wait_final(memory, [r.id for r in records])
        # counted in this process's multiprocess files, as /metrics reads them
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=str(tmp_path))  # type: ignore[no-untyped-call]
        labels = {"capability": "fixture.noop", "status": "succeeded"}
        assert registry.get_sample_value("crank_tasks_total", labels) == 3
    finally:
        close_files()
        reset_plugin_manager()


def test_a_task_finished_hook_that_raises_spares_the_other_plugins(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import pluggy

    from crank import hookspecs
    from crank.hookspecs import hookimpl
    from crank.plugins import CrankPluginManager
    from crank.runtime import worker_process

    seen: list[tuple[str, str, float]] = []

    class Counts:
        @hookimpl
        def crank_task_finished(self, capability: str, status: str, duration_s: float) -> None:
            seen.append((capability, status, duration_s))

    class Raises:
        @hookimpl
        def crank_task_finished(self, capability: str, status: str, duration_s: float) -> None:
            raise RuntimeError("plugin bug")

    def only_these(*, builtins: bool = True) -> CrankPluginManager:
        pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        pm.add_hookspecs(hookspecs)
        manager = CrankPluginManager(pm)
        manager.register(Counts(), name="counts")
        manager.register(Raises(), name="raises")  # registered last: pluggy calls it first
        return manager

    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    monkeypatch.setattr(worker_process, "build_plugin_manager", only_these)
    hook = worker_process.task_finished_hook()
    assert hook is not None
    with caplog.at_level(logging.ERROR, logger="crank.runtime.worker"):
        hook("fixture.noop", "succeeded", 0.25)
    assert seen == [("fixture.noop", "succeeded", 0.25)]
    assert [r.getMessage() for r in caplog.records] == [
        "task_finished hook of plugin 'raises' failed"
    ]


def test_streaming_tasks_publish_each_event_and_other_tasks_publish_none(
    memory: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    http_workers = Path(__file__).resolve().parents[1] / "fixtures" / "http_workers"
    monkeypatch.syspath_prepend(str(http_workers))
    bindings = load_bindings([str(http_workers / "crank.yaml")])
    loop = WorkerLoop(config(), broker=memory, bindings=bindings)
    count = memory.submit(TaskSpec("demo.count", {"n": 3}))
    echo = memory.submit(TaskSpec("demo.echo", {"text": "hi"}))
    with Running(loop):
        done = wait_final(memory, [count.id, echo.id])
    assert [r.status for r in done] == ["succeeded", "succeeded"]
    assert memory.read_events(count.id, 0) == [(1, {"i": 1}), (2, {"i": 2}), (3, {"i": 3})]
    assert done[0].result == [{"i": 1}, {"i": 2}, {"i": 3}]
    assert memory.read_events(echo.id, 0) == []


def test_a_stop_gives_the_batchs_unstarted_tasks_back_at_once(
    memory: Broker, tmp_path: Path
) -> None:
    """Claimed four at a time: at the stop, the three behind the running one go back to
    the queue at once, not after the running one ends (docs/runtime.md: SIGTERM gives
    the waiting ones back at once); the running one finishes."""
    gate, started = tmp_path / "gate", tmp_path / "started"
    held = memory.submit(
        TaskSpec("fixture.wait_for_file", {"path": str(gate), "started": str(started)})
    )
    behind = memory.submit_many([TaskSpec("fixture.noop", {}) for _ in range(3)])
    loop = WorkerLoop(config(batch_size=4, grace_s=120.0), broker=memory)
    # fast tasks seen before: the claim takes a batch of 4
    loop._task_s = {"fixture.wait_for_file": 1e-6, "fixture.noop": 1e-6}
    runner = Running(loop)
    with runner:
        try:
            deadline = time.monotonic() + 120
            while not started.exists():
                assert time.monotonic() < deadline, "the held task never started"
                time.sleep(0.01)
            loop.request_stop(signal.SIGTERM)
            while not all(_status(memory, r.id) == "pending" for r in behind):
                assert time.monotonic() < deadline, [memory.get(r.id) for r in behind]
                time.sleep(0.01)
            assert _status(memory, held.id) == "running"  # still at its gate
        finally:
            gate.touch()
    assert runner.exit == [0]
    assert _status(memory, held.id) == "succeeded"
    for record in behind:
        _assert_given_back(memory, record.id)


def _status(broker: Broker, task_id: str) -> str | None:
    record = broker.get(task_id)
    return None if record is None else record.status
