"""The broker's value types."""

from __future__ import annotations

from dataclasses import fields, replace

from crank.runtime.brokers.contract import ClaimOptions, TaskRecord


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


def test_claim_options_keep_capabilities_sorted_without_repeats() -> None:
    # the backends build their queries from these ids as they are
    options = ClaimOptions("w1", capabilities=("demo.b", "demo.a", "demo.b"))
    assert options.capabilities == ("demo.a", "demo.b")
    assert replace(options, limit=5).capabilities == ("demo.a", "demo.b")
    assert ClaimOptions("w1").capabilities is None
