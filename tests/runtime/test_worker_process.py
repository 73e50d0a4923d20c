"""The worker-process loop: outcomes of tasks, heartbeats, signals, the entry point."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from crank.errors import UsageError
from crank.runtime.brokers import open_broker
from crank.runtime.brokers.contract import ClaimOptions, TaskSpec
from crank.runtime.worker_process import WorkerLoop, WorkerProcessConfig, load_bindings

if TYPE_CHECKING:
    from collections.abc import Iterator

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


def test_unknown_capability_is_a_usage_error() -> None:
    with pytest.raises(UsageError) as info:
        WorkerLoop(config(capabilities=("fixture.nope",)), broker=open_broker("memory://"))
    assert info.value.message == "capabilities not declared by the given manifests: fixture.nope"


def test_the_same_capability_from_two_manifests_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="declared by"):
        load_bindings([MANIFEST, MANIFEST])


@pytest.mark.slow
def test_heartbeat_keeps_a_long_task_from_being_redelivered(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'q.db'}"
    broker = open_broker(url)
    # The lease (1.5 s) runs out well inside the thief's window (2.5 s) unless the
    # heartbeat (every 0.1 s) renews it; a stall of the heartbeat under 1.4 s is fine.
    loop = WorkerLoop(
        config(url, visibility_timeout_s=1.5, heartbeat_s=0.1), broker=open_broker(url)
    )
    record = broker.submit(TaskSpec("fixture.sleep", {"seconds": 3.0}))
    with Running(loop):
        while (got := broker.get(record.id)) is None or got.status != "running":
            time.sleep(0.01)
        deadline = time.monotonic() + 2.5
        while time.monotonic() < deadline:
            assert broker.claim(ClaimOptions("thief", visibility_timeout_s=1.5)) == []
            time.sleep(0.05)
        [done] = wait_final(broker, [record.id])
    assert (done.status, done.attempts) == ("succeeded", 1)


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


def _batches_then_a_long_one(broker: Broker, seconds: float, tail: int) -> list[TaskRecord]:
    """Claims with batch_size 2: one quick task (a first claim asks for one), then a
    quick one and one that sleeps ``seconds``, during which the next two quick ones
    are prefetched (the batch before was fast and full); then ``tail`` more.
    One capability, so every backend claims them in this order."""
    durations = [0.0, 0.0, seconds, 0.0, 0.0] + [0.0] * tail
    return broker.submit_many([TaskSpec("fixture.sleep", {"seconds": s}) for s in durations])


@pytest.mark.slow
def test_prefetched_tasks_are_held_while_a_long_batch_runs(broker_url: str) -> None:
    broker = open_broker(broker_url)
    # As in the heartbeat test: the lease (1.5 s) runs out well inside the thief's
    # window (2.5 s) unless the heartbeat (every 0.1 s) renews it.
    loop = WorkerLoop(
        config(broker_url, batch_size=2, visibility_timeout_s=1.5, heartbeat_s=0.1), broker=broker
    )
    records = _batches_then_a_long_one(broker, 3.0, tail=0)
    with Running(loop):
        _wait_until_started(loop, records[2].id)
        # past the visibility timeout, the prefetched no-ops are still held by the worker
        deadline = time.monotonic() + 2.5
        while time.monotonic() < deadline:
            assert broker.claim(ClaimOptions("thief", limit=10, visibility_timeout_s=1.5)) == []
            time.sleep(0.05)
        done = wait_final(broker, [r.id for r in records])
    assert [(d.status, d.attempts) for d in done] == [("succeeded", 1)] * 5
    broker.close()


@pytest.mark.slow
def test_stopping_during_a_prefetched_batch_gives_the_prefetch_back(broker_url: str) -> None:
    broker = open_broker(broker_url)
    loop = WorkerLoop(config(broker_url, batch_size=2), broker=broker)
    records = _batches_then_a_long_one(broker, 0.5, tail=1)
    with Running(loop):
        _wait_until_started(loop, records[2].id)
        loop.request_stop()
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
    assert loop._next_limit() == 1  # nothing known: one task
    loop._observe(0.001, 100)  # 10 µs per task
    assert loop._next_limit() == 50
    for _ in range(10):
        loop._observe(2.0, 1)  # now 2 s per task
    assert loop._next_limit() == 1
    loop._observe(0.0, 0)  # an empty batch says nothing
    assert loop._next_limit() == 1


@pytest.mark.slow
def test_grace_period_over_releases_the_running_task(memory: Broker) -> None:
    exits: list[int] = []
    loop = WorkerLoop(config(grace_s=0.2), broker=memory, hard_exit=exits.append)
    record = memory.submit(TaskSpec("fixture.sleep", {"seconds": 3.0}))
    thread = threading.Thread(target=loop.run)
    thread.start()
    while (got := memory.get(record.id)) is None or got.status != "running":
        time.sleep(0.01)
    loop.request_stop()
    deadline = time.monotonic() + 120
    while not exits and time.monotonic() < deadline:
        time.sleep(0.01)
    assert exits == [1]
    released = memory.get(record.id)
    assert released is not None
    assert (released.status, released.attempts) == ("pending", 0)
    thread.join(timeout=120)


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


def test_entry_point_reports_a_bad_broker_url(env: dict[str, str]) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "crank.runtime.worker_process", "--broker", "amqp://x",
         "--manifest", MANIFEST],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[:2] == [
        "error: broker URL 'amqp://x' cannot be used: unknown scheme 'amqp'",
        "  hint: use memory://, sqlite:///relative/path.db, sqlite:////absolute/path.db "
        "or redis://host:port/db",
    ]


def _http_modules_after_importing(module: str) -> list[str]:
    """The HTTP stack's modules a fresh interpreter holds once ``module`` is imported."""
    probe = (
        f"import sys, {module}; print(' '.join(sorted(m for m in sys.modules "
        "if m.split('.')[0] in ('starlette', 'uvicorn', 'httpx') "
        "or m.startswith('crank.runtime.http'))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout.split()


def test_a_worker_process_does_not_load_the_http_stack() -> None:
    assert _http_modules_after_importing("crank.runtime.worker_process") == []
    # the probe sees them where they belong
    assert "starlette" in _http_modules_after_importing("crank.runtime.serve")


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
