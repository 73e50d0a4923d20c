"""The broker's value types."""

from __future__ import annotations

from dataclasses import fields, replace

from crank.runtime.brokers.contract import ClaimOptions, Notice, TaskRecord


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


def test_a_notice_finishes_a_record_as_the_dataclass_would() -> None:
    # Notice.finish copies the record without the frozen dataclass's __init__ for speed:
    # the copy must equal what dataclasses.replace makes, and leave the record as it was
    record = TaskRecord(
        id="t1",
        capability="demo.echo",
        payload={"n": 1},
        status="pending",
        priority=2,
        max_attempts=4,
        created_at=1.5,
        updated_at=1.5,
        meta={"requested": "demo.old_echo"},
    )
    succeeded = Notice("t1", "succeeded", 2, '{"echo": 1}').finish(record)
    assert succeeded == replace(
        record, status="succeeded", attempts=2, result={"echo": 1}, error=None
    )
    failed = Notice("t1", "failed", 1, '{"code": "BOOM", "message": "no"}').finish(record)
    assert failed == replace(
        record, status="failed", attempts=1, error={"code": "BOOM", "message": "no"}
    )
    dead = Notice("t1", "dead", 3, '"gone"').finish(record)
    assert dead == replace(record, status="dead", attempts=3, error={"message": "gone"})
    for ended in (succeeded, failed, dead):
        assert ended is not None and ended.done
        assert set(vars(ended)) == {f.name for f in fields(TaskRecord)}
        assert ended.requested == "demo.old_echo"
    assert (record.status, record.attempts, record.result) == ("pending", 0, None)
    assert Notice("t1", "succeeded", 1).finish(record) is None  # no outcome carried


def test_claim_options_keep_capabilities_sorted_without_repeats() -> None:
    # the backends build their queries from these ids as they are
    options = ClaimOptions("w1", capabilities=("demo.b", "demo.a", "demo.b"))
    assert options.capabilities == ("demo.a", "demo.b")
    assert replace(options, limit=5).capabilities == ("demo.a", "demo.b")
    assert ClaimOptions("w1").capabilities is None
