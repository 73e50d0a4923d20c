"""The broker's value types."""

from __future__ import annotations

from dataclasses import fields

from crank.runtime.broker import TaskRecord


def test_claimed_record_is_the_same_as_one_built_by_the_dataclass() -> None:
    # TaskRecord.claimed skips the frozen dataclass's __init__ for speed; it must set
    # exactly the fields __init__ sets, to the same values.
    values = {
        "id": "t1",
        "capability": "demo.echo",
        "payload": {"n": 1},
        "priority": 5,
        "attempts": 2,
        "max_attempts": 4,
        "idempotency_key": "k",
        "created_at": 1.5,
        "updated_at": 2.5,
        "timeout_s": 3.0,
        "meta": {"request_id": "r"},
    }
    fast = TaskRecord.claimed(**values)  # type: ignore[arg-type]
    slow = TaskRecord(status="running", **values)  # type: ignore[arg-type]
    assert fast == slow
    assert set(vars(fast)) == {f.name for f in fields(TaskRecord)}
    assert (fast.result, fast.error, fast.done) == (None, None, False)
