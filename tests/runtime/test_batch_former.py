"""When the batch former releases a batch, on a clock the test sets: full at once, after
``max_latency_ms`` from the oldest task, or early enough for a task's deadline."""

from __future__ import annotations

import pytest

from crank.manifest import Batching
from crank.runtime.batch_former import DEADLINE_SHARE, BatchFormer
from crank.runtime.brokers.contract import Claim, TaskRecord


def claim(task_id: str, capability: str = "cap.a") -> Claim:
    return Claim(TaskRecord(task_id, capability, {}, "running"), receipt=task_id, attempt=1)


@pytest.fixture
def former() -> BatchFormer:
    return BatchFormer(
        {"cap.a": Batching(max_batch_size=3, max_latency_ms=100), "cap.b": Batching(2, 50)}
    )


def test_a_full_batch_is_released_at_once(former: BatchFormer) -> None:
    for i in range(4):
        former.add(claim(f"t{i}"), arrived=10.0 + i / 1000, deadline=None)
    [batch] = former.due(10.004)
    assert (batch.reason, [w.claim.task.id for w in batch.items]) == ("full", ["t0", "t1", "t2"])
    # the fourth starts the next batch, which waits for its latency
    assert former.room("cap.a") == 2
    assert former.next_release() == pytest.approx(10.003 + 0.1)


def test_a_batch_that_does_not_fill_waits_max_latency_from_its_oldest_task(
    former: BatchFormer,
) -> None:
    former.add(claim("t0"), arrived=10.0, deadline=None)
    former.add(claim("t1"), arrived=10.05, deadline=None)
    assert former.due(10.099) == []
    [batch] = former.due(10.1)
    assert batch.reason == "latency"
    assert batch.waits() == pytest.approx([0.1, 0.05])
    assert former.waiting() == 0


def test_a_batch_runs_before_the_deadline_of_its_tasks(former: BatchFormer) -> None:
    # an 80 ms timeout: released with a twentieth of it left, before 100 ms of latency
    former.add(claim("t0"), arrived=10.0, deadline=10.08)
    start_by = 10.08 - DEADLINE_SHARE * 0.08
    assert former.next_release() == pytest.approx(start_by)
    assert former.due(start_by - 0.001) == []
    [batch] = former.due(start_by)
    assert batch.reason == "deadline"


def test_the_deadline_margin_grows_with_the_batches_run_time(former: BatchFormer) -> None:
    former.add(claim("t0"), arrived=10.0, deadline=10.12)
    # a twentieth of its 120 ms timeout left at 100 ms of latency: latency comes first
    assert former.next_release() == pytest.approx(10.1)
    former.ran("cap.a", 0.05)
    # batches take 50 ms now: it must start by 10.07 to finish by its deadline
    assert former.next_release() == pytest.approx(10.07)
    [batch] = former.due(10.07)
    assert batch.reason == "deadline"


def test_due_keeps_capabilities_apart_and_lists_the_oldest_batch_first(
    former: BatchFormer,
) -> None:
    former.add(claim("a0"), arrived=10.01, deadline=None)
    former.add(claim("b0", "cap.b"), arrived=10.0, deadline=None)
    former.add(claim("b1", "cap.b"), arrived=10.02, deadline=None)
    former.add(claim("a1"), arrived=10.03, deadline=None)
    assert former.room("cap.a") == 1
    assert former.room("cap.b") == 0
    assert "cap.a" in former and "cap.c" not in former
    due = former.due(10.2)
    assert [(b.capability, b.reason) for b in due] == [("cap.b", "full"), ("cap.a", "latency")]
    assert [w.claim.task.id for w in due[1].items] == ["a0", "a1"]


def test_drain_takes_every_waiting_task(former: BatchFormer) -> None:
    former.add(claim("a0"), arrived=1.0, deadline=None)
    former.add(claim("b0", "cap.b"), arrived=1.0, deadline=None)
    assert sorted(w.claim.task.id for w in former.drain()) == ["a0", "b0"]
    assert former.waiting() == 0
    assert former.next_release() is None
