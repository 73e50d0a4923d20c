"""Cancelling tasks (``Broker.cancel``), run against every backend: a pending task never
runs, the worker holding a running one is told, and whatever that worker does next ends
the task ``cancelled`` (or ``succeeded``, when it finished first)."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

import pytest

from crank.runtime.brokers import open_broker
from crank.runtime.brokers.contract import ClaimOptions, TaskSpec

from .test_contract import claim_until

if TYPE_CHECKING:
    from crank.runtime.brokers.contract import Broker, TaskRecord

WAIT_S = 60.0


def spec(n: int = 0, **kw: object) -> TaskSpec:
    return TaskSpec("demo.echo", {"n": n}, **kw)  # type: ignore[arg-type]


class Told:
    """What ``listen_for_cancels`` hands over, and a way to wait for it."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self._lock = threading.Condition()

    def __call__(self, task_id: str) -> None:
        with self._lock:
            self.ids.append(task_id)
            self._lock.notify_all()

    def wait_for(self, task_id: str) -> None:
        with self._lock:
            assert self._lock.wait_for(lambda: task_id in self.ids, WAIT_S), self.ids


def nothing_claimable(broker: Broker) -> None:
    assert broker.claim(ClaimOptions("w9", limit=10, block_s=0.2)) == []


def cancelled_before_it_ran(cause: dict[str, Any] | None = None) -> dict[str, Any]:
    """The error of a task cancelled while it waited (with its last error, if retried)."""
    error: dict[str, Any] = {
        "code": "CANCELLED",
        "message": "cancelled before it ran",
        "type": "TaskCancelled",
    }
    return error if cause is None else {**error, "cause": cause}


def test_a_pending_task_is_cancelled_and_never_runs(broker: Broker) -> None:
    record = broker.submit(spec(1))
    kept = broker.submit(spec(2))
    cancellation = broker.cancel(record.id)
    assert cancellation is not None
    assert cancellation.outcome == "cancelled"
    task = cancellation.task
    assert (task.id, task.status, task.attempts) == (record.id, "cancelled", 0)
    assert task.error == cancelled_before_it_ran()
    assert task.cancel_requested_at is not None
    assert broker.get(record.id) == task
    [claim] = broker.claim(ClaimOptions("w1", limit=10))
    assert claim.task.id == kept.id
    nothing_claimable(broker)
    assert broker.stats().pending == {}


def test_a_task_waiting_out_a_retry_is_cancelled_with_its_last_error(broker: Broker) -> None:
    record = broker.submit(spec(1))
    [claim] = broker.claim(ClaimOptions("w1"))
    flaky = {"code": "FLAKY", "message": "try again", "type": "X"}
    assert broker.fail(claim, flaky, retryable=True) == "retrying"
    cancellation = broker.cancel(record.id)
    assert cancellation is not None and cancellation.outcome == "cancelled"
    assert cancellation.task.error == cancelled_before_it_ran(cause=flaky)
    time.sleep(0.1)  # the backoff (10 to 50 ms here) is over: the retry would be due now
    nothing_claimable(broker)


def retry_back_in_line(broker: Broker, error: dict[str, Any]) -> TaskRecord:
    """A task that failed with ``error``, whose backoff is over, moved back among the
    queued tasks by a claim (of another capability: it takes nothing)."""
    record = broker.submit(spec(1))
    [claim] = broker.claim(ClaimOptions("w1"))
    assert broker.fail(claim, error, retryable=True) == "retrying"
    deadline = time.monotonic() + WAIT_S
    while broker.stats().backing_off:
        assert time.monotonic() < deadline, "the retry never came due"
        time.sleep(0.01)
    assert broker.claim(ClaimOptions("w2", capabilities=("demo.other",))) == []
    return record


def test_a_retry_back_in_line_is_still_retrying_and_cancelled_with_its_last_error(
    broker: Broker,
) -> None:
    """A retry whose backoff is over, moved back among the queued tasks by a claim (of
    another capability here), stays ``retrying`` with its last error until a worker
    takes it, on every backend: it was ``pending`` on Redis, and its cancel lost the
    cause."""
    flaky = {"code": "FLAKY", "message": "try again", "type": "X"}
    record = retry_back_in_line(broker, flaky)
    task = broker.get(record.id)
    assert task is not None
    assert (task.status, task.attempts, task.error) == ("retrying", 1, flaky)
    assert broker.stats().pending == {"demo.echo": 1}
    cancellation = broker.cancel(record.id)
    assert cancellation is not None and cancellation.outcome == "cancelled"
    assert cancellation.task.error == cancelled_before_it_ran(cause=flaky)
    nothing_claimable(broker)
    assert broker.stats().pending == {}


def test_a_retry_back_in_line_runs_again(broker: Broker) -> None:
    record = retry_back_in_line(broker, {"code": "FLAKY", "message": "m"})
    [again] = claim_until(broker, 1)
    assert (again.task.id, again.task.attempts) == (record.id, 2)
    task = broker.get(record.id)
    assert task is not None and task.status == "running"
    broker.ack_many([(again, {"ok": True})])
    task = broker.get(record.id)
    assert task is not None and (task.status, task.result) == ("succeeded", {"ok": True})
    nothing_claimable(broker)


def test_a_task_given_back_unrun_is_cancelled_like_a_pending_one(broker: Broker) -> None:
    record = broker.submit(spec(1))
    [claim] = broker.claim(ClaimOptions("w1"))
    broker.release([claim])
    cancellation = broker.cancel(record.id)
    assert cancellation is not None and cancellation.outcome == "cancelled"
    nothing_claimable(broker)
    assert broker.stats().running == 0


def test_the_worker_holding_a_running_task_is_told_and_its_failure_cancels_it(
    broker: Broker,
) -> None:
    told, elsewhere = Told(), Told()
    stop = broker.listen_for_cancels("w1", told)
    stop_elsewhere = broker.listen_for_cancels("w2", elsewhere)
    try:
        record = broker.submit(spec(1))
        [claim] = broker.claim(ClaimOptions("w1"))
        assert broker.cancel_requested([record.id]) == set()
        cancellation = broker.cancel(record.id)
        assert cancellation is not None
        assert cancellation.outcome == "stopping"
        assert cancellation.task.status == "running"
        assert cancellation.task.cancel_requested_at is not None
        told.wait_for(record.id)
        assert broker.cancel_requested([record.id, "no-such-task"]) == {record.id}
        # asking again changes nothing and tells the worker again
        again = broker.cancel(record.id)
        assert again is not None and again.outcome == "stopping"
        assert again.task.cancel_requested_at == cancellation.task.cancel_requested_at
        stopped = {"code": "TIMEOUT", "message": "stopped", "type": "TaskCancelled"}
        assert broker.fail(claim, stopped, retryable=True) == "cancelled"
    finally:
        stop()
        stop_elsewhere()
    ended = broker.get(record.id)
    assert ended is not None
    assert (ended.status, ended.attempts) == ("cancelled", 1)
    assert ended.error == {
        "code": "CANCELLED",
        "message": "cancelled while it ran",
        "type": "TaskCancelled",
        "cause": stopped,
    }
    assert elsewhere.ids == []
    assert broker.dead_letters() == []
    nothing_claimable(broker)
    assert broker.cancel(record.id) == type(cancellation)("finished", ended)


def test_a_running_task_that_finishes_first_succeeds(broker: Broker) -> None:
    record = broker.submit(spec(1))
    [claim] = broker.claim(ClaimOptions("w1"))
    cancellation = broker.cancel(record.id)
    assert cancellation is not None and cancellation.outcome == "stopping"
    broker.ack(claim, {"done": True})
    ended = broker.get(record.id)
    assert ended is not None
    assert (ended.status, ended.result) == ("succeeded", {"done": True})
    assert ended.cancel_requested_at == cancellation.task.cancel_requested_at


def test_a_cancel_answers_with_the_task_as_it_left_it(
    broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker told to stop may end the task before the cancel has answered; the
    answer is still the moment of the cancel: running, asked to stop."""
    record = broker.submit(spec(1))
    [claim] = broker.claim(ClaimOptions("w1"))
    if hasattr(broker, "_script"):  # Redis: the worker ends it right after the script
        script = broker._script

        def then_the_worker_fails_it(name: str, args: Any, what: str) -> Any:
            reply = script(name, args, what)
            if name == "cancel":
                broker.fail(claim, {"code": "CANCELLED", "message": "told"}, retryable=False)
            return reply

        monkeypatch.setattr(broker, "_script", then_the_worker_fails_it)
    cancellation = broker.cancel(record.id)
    assert cancellation is not None and cancellation.outcome == "stopping"
    task = cancellation.task
    assert (task.status, task.done, task.attempts) == ("running", False, 1)
    assert task.cancel_requested_at is not None


def test_a_held_task_given_back_after_a_cancel_never_ran(broker: Broker) -> None:
    record = broker.submit(spec(1))
    [claim] = broker.claim(ClaimOptions("w1"))
    broker.cancel(record.id)
    broker.release([claim])
    ended = broker.get(record.id)
    assert ended is not None
    assert (ended.status, ended.attempts) == ("cancelled", 0)
    assert ended.error is not None and ended.error["message"] == "cancelled before it ran"
    nothing_claimable(broker)


def test_a_cancelled_task_whose_lease_runs_out_is_not_delivered_again(broker: Broker) -> None:
    record = broker.submit(spec(1))
    [claim] = broker.claim(ClaimOptions("w1", visibility_timeout_s=0.05))
    broker.cancel(record.id)
    time.sleep(0.1)
    assert claim_until(broker, 1, timeout_s=0.5, consumer="w2", visibility_timeout_s=0.05) == []
    ended = broker.get(record.id)
    assert ended is not None
    assert (ended.status, ended.attempts) == ("cancelled", 1)
    assert ended.error is not None
    assert ended.error["message"] == "cancelled while it ran; its worker stopped before it did"
    # the worker that held it, back, cannot end it otherwise
    assert broker.fail(claim, {"code": "E", "message": "x"}, retryable=True) == "cancelled"
    broker.ack(claim, {"late": True})
    assert broker.get(record.id) == ended


def test_a_cancelled_task_of_a_dead_worker_is_not_delivered_again(broker: Broker) -> None:
    record = broker.submit(spec(1))
    kept = broker.submit(spec(2))
    broker.claim(ClaimOptions("w1", limit=2))
    broker.cancel(record.id)
    assert broker.recover("w1") == 2
    [claim] = claim_until(broker, 1, consumer="w2")
    assert claim.task.id == kept.id
    assert claim_until(broker, 1, timeout_s=0.3, consumer="w2") == []
    ended = broker.get(record.id)
    assert ended is not None and ended.status == "cancelled"


def test_nothing_to_cancel(broker: Broker) -> None:
    assert broker.cancel("no-such-task") is None
    record = broker.submit(spec(1))
    [claim] = broker.claim(ClaimOptions("w1"))
    broker.ack(claim, {"n": 1})
    finished = broker.cancel(record.id)
    assert finished is not None
    assert finished.outcome == "finished"
    assert finished.task.status == "succeeded"
    assert finished.task.cancel_requested_at is None


def test_a_waiter_hears_of_a_cancel(broker: Broker) -> None:
    record = broker.submit(spec(1), watch=True)
    heard: list[object] = []
    waiter = threading.Thread(target=lambda: heard.append(broker.wait_for_result(record.id, 60)))
    waiter.start()
    broker.cancel(record.id)
    waiter.join(WAIT_S)
    [ended] = heard
    assert getattr(ended, "status", None) == "cancelled"


def test_after_stop_nobody_is_told(broker: Broker) -> None:
    told = Told()
    broker.listen_for_cancels("w1", told)()
    record = broker.submit(spec(1))
    broker.claim(ClaimOptions("w1"))
    later = Told()
    stop = broker.listen_for_cancels("w1", later)
    try:
        broker.cancel(record.id)
        later.wait_for(record.id)
    finally:
        stop()
    assert told.ids == []


@pytest.mark.slow
def test_cancelled_tasks_expire_like_results(broker_url: str) -> None:
    broker = open_broker(broker_url, result_ttl_s=1.0)
    try:
        record = broker.submit(spec(1, idempotency_key="c"))
        broker.cancel(record.id)
        deadline = time.monotonic() + 60
        while broker.get(record.id) is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert broker.get(record.id) is None
        assert broker.submit(spec(2, idempotency_key="c")).id != record.id
    finally:
        broker.close()
