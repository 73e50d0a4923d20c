"""A worker process and cancelled tasks, in-process on every backend: a running handler
sees ``ctx.cancelled``; a task cancelled after it was claimed but before it started
never runs; a lost notice is made up for by the heartbeat."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

import pytest

from crank.runtime.brokers import open_broker
from crank.runtime.brokers.contract import TaskSpec
from crank.runtime.worker_process import WorkerLoop

from .test_worker_process import FIXTURES, Running, config, wait_final

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from crank.runtime.brokers.contract import Broker, Claim

WAIT_S = 120.0


@pytest.fixture(autouse=True)
def fixture_worker_importable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(FIXTURES))


@pytest.fixture
def opened(broker_url: str) -> Iterator[Broker]:
    broker = open_broker(broker_url)
    try:
        yield broker
    finally:
        broker.close()


def wait_for(check: Callable[[], Any], what: str) -> Any:
    deadline = time.monotonic() + WAIT_S
    while not (found := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)
    return found


def test_a_running_handler_sees_ctx_cancelled_and_its_task_ends_cancelled(
    opened: Broker, tmp_path: Path
) -> None:
    started, stopped = tmp_path / "started", tmp_path / "stopped"
    finished: list[tuple[str, str]] = []
    loop = WorkerLoop(config(), broker=opened, on_finished=lambda c, s, d: finished.append((c, s)))
    payload = {"started": str(started), "stopped": str(stopped)}
    with Running(loop):
        record = opened.submit(TaskSpec("fixture.until_cancelled", payload))
        wait_for(started.exists, "the handler to start")
        cancellation = opened.cancel(record.id)
        assert cancellation is not None and cancellation.outcome == "stopping"
        [ended] = wait_final(opened, [record.id])
    assert stopped.read_text() == record.id  # the handler saw ctx.cancelled and stopped
    assert ended.status == "cancelled"
    assert ended.error is not None
    assert ended.error["message"] == "cancelled while it ran"
    assert ended.error["cause"]["type"] == "TaskCancelled"
    assert finished == [("fixture.until_cancelled", "cancelled")]


class CancelAfterClaim:
    """A broker that cancels each ``fixture.mark`` task as soon as a claim delivered it,
    and returns the claim once the loop was told: the cancel lands between the claim and
    the start."""

    def __init__(self, broker: Broker) -> None:
        self._broker = broker
        self.loop: WorkerLoop | None = None

    def ack_and_claim(self, *args: Any, **kwargs: Any) -> list[Claim]:
        got: list[Claim] = self._broker.ack_and_claim(*args, **kwargs)
        for claim in got:
            if claim.task.capability == "fixture.mark":
                cancellation = self._broker.cancel(claim.task.id)
                assert cancellation is not None and cancellation.outcome == "stopping"
                cancels = self.loop._cancels if self.loop is not None else set()
                task_id = claim.task.id
                wait_for(lambda: task_id in cancels, "the loop to be told")  # noqa: B023
        return got

    def __getattr__(self, name: str) -> Any:
        return getattr(self._broker, name)


def test_a_task_cancelled_after_its_claim_never_starts(opened: Broker, tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    broker = CancelAfterClaim(opened)
    loop = WorkerLoop(config(), broker=broker)  # type: ignore[arg-type]
    broker.loop = loop
    with Running(loop):
        cancelled = opened.submit(TaskSpec("fixture.mark", {"path": str(marks)}))
        [ended] = wait_final(opened, [cancelled.id])
        after = opened.submit(TaskSpec("fixture.echo", {"n": 1}))
        wait_final(opened, [after.id])
    assert not marks.exists()  # it never ran
    assert (ended.status, ended.attempts) == ("cancelled", 0)
    assert ended.error is not None and ended.error["message"] == "cancelled before it ran"


class DeafBroker:
    """A memory broker whose cancel notices never arrive."""

    def __init__(self, broker: Broker) -> None:
        self._broker = broker

    def listen_for_cancels(self, consumer: str, on_cancel: Callable[[str], None]) -> Any:
        return lambda: None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._broker, name)


def test_a_lost_notice_is_made_up_for_by_the_heartbeat(tmp_path: Path) -> None:
    memory = open_broker("memory://")
    started, stopped = tmp_path / "started", tmp_path / "stopped"
    loop = WorkerLoop(config(heartbeat_s=0.05), broker=DeafBroker(memory))  # type: ignore[arg-type]
    with Running(loop):
        record = memory.submit(
            TaskSpec("fixture.until_cancelled", {"started": str(started), "stopped": str(stopped)})
        )
        wait_for(started.exists, "the handler to start")
        memory.cancel(record.id)
        [ended] = wait_final(memory, [record.id])
    assert ended.status == "cancelled"
    assert stopped.exists()


def test_the_loop_stops_listening_when_it_stops(tmp_path: Path) -> None:
    memory = open_broker("memory://")
    told: list[str] = []
    stops: list[threading.Event] = []

    class Listening:
        def listen_for_cancels(self, consumer: str, on_cancel: Callable[[str], None]) -> Any:
            told.append(consumer)
            stopped = threading.Event()
            stops.append(stopped)
            return stopped.set

        def __getattr__(self, name: str) -> Any:
            return getattr(memory, name)

    loop = WorkerLoop(config(), broker=Listening())  # type: ignore[arg-type]
    with Running(loop):
        wait_for(lambda: told, "the loop to listen")
        assert not stops[0].is_set()
    assert told == ["test-worker"]
    assert stops[0].is_set()
