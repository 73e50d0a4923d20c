"""max_concurrency slots between real processes, the HTTP gate, and the deploy-time override."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import TYPE_CHECKING

import pytest

from crank.errors import UsageError
from crank.manifest import manifest_from_dict
from crank.runtime.concurrency import (
    CallAdmission,
    ConcurrencyLimited,
    ConcurrencySlots,
    concurrency_limits,
    parse_overrides,
)

if TYPE_CHECKING:
    from pathlib import Path

# Another process takes one slot of a.b (limit 2), says so, and holds it until killed.
HOLDER = """
import sys, time
from crank.runtime.concurrency import ConcurrencySlots
slot = ConcurrencySlots(sys.argv[1], {"a.b": 2}).try_acquire("a.b")
print(slot.index, flush=True)
time.sleep(600)
"""


def manifest(**limits: int | None) -> object:
    caps = [
        {"id": cid, "version": "1.0.0", "input": {}, "output": {}}
        | ({} if limit is None else {"max_concurrency": limit})
        for cid, limit in limits.items()
    ]
    return manifest_from_dict(
        {
            "apiVersion": "crank.dev/v1",
            "kind": "Worker",
            "metadata": {"name": "w", "version": "1.0.0"},
            "worker": {"entrypoint": "w:W"},
            "capabilities": caps,
        }
    )


def test_limits_come_from_the_manifest_and_the_override_wins() -> None:
    m = manifest(**{"a.b": 4, "c.d": None, "e.f": 2})
    assert concurrency_limits([m], {}) == {"a.b": 4, "e.f": 2}  # type: ignore[list-item]
    env = {"CRANK_MAX_CONCURRENCY": " c.d=3, a.b=1 "}
    assert concurrency_limits([m], env) == {"a.b": 1, "c.d": 3, "e.f": 2}  # type: ignore[list-item]


@pytest.mark.parametrize("raw", ["a.b", "a.b=0", "a.b=-1", "a.b=two", "=3", "a.b=1.5"])
def test_an_override_that_is_not_capability_equals_n_is_refused(raw: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_overrides(raw)
    assert info.value.message == (
        f"CRANK_MAX_CONCURRENCY: {raw.strip()!r} is not CAPABILITY=N with N a positive whole number"
    )


def test_an_override_of_a_capability_nobody_serves_is_refused() -> None:
    with pytest.raises(UsageError) as info:
        concurrency_limits([manifest(**{"a.b": 1})], {"CRANK_MAX_CONCURRENCY": "x.y=2"})  # type: ignore[list-item]
    assert info.value.message == "CRANK_MAX_CONCURRENCY names x.y, which no served worker declares"
    assert info.value.hint == "served capabilities: a.b"


def test_slots_are_shared_between_processes_and_freed_when_the_holder_dies(
    tmp_path: Path,
) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "0"  # it holds slot 0
        slots = ConcurrencySlots(tmp_path, {"a.b": 2})
        assert not slots.full("a.b")
        mine = slots.try_acquire("a.b")
        assert mine is not None and mine.index == 1
        assert slots.full("a.b")
        assert slots.try_acquire("a.b") is None  # two held, by two processes
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=30)
        # the kernel dropped the dead holder's lock: its slot is free, nothing leaked
        deadline = time.monotonic() + 30
        while slots.full("a.b"):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        again = slots.try_acquire("a.b")
        assert again is not None and again.index == 0
        mine.release()
        mine.release()  # once only
        assert not slots.full("a.b")
        again.release()
        slots.close()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(timeout=30)
        if holder.stdout is not None:
            holder.stdout.close()


def test_the_http_gate_counts_its_own_calls_and_the_held_slots(tmp_path: Path) -> None:
    slots = ConcurrencySlots(tmp_path, {"a.b": 2})
    gate = CallAdmission({"a.b": 2}, slots)
    assert gate.admit("c.d")  # not limited: always admitted
    first, second = gate.admit("a.b"), gate.admit("a.b")
    with pytest.raises(ConcurrencyLimited) as info:
        gate.admit("a.b")  # two calls admitted here, none running yet
    assert (info.value.capability, info.value.limit) == ("a.b", 2)
    # it says what fills the limit: calls that may still be queued, not "running"
    assert info.value.message == (
        "a.b is at its max_concurrency of 2: 2 synchronous or streaming call(s) of it are "
        "in progress on this server (running, or queued until a worker takes them)"
    )
    first.release()
    first.release()  # once only: still one admitted
    third = gate.admit("a.b")
    third.release()
    second.release()
    # queued tasks running elsewhere hold both slots: a call now would only wait
    held = [slots.try_acquire("a.b"), slots.try_acquire("a.b")]
    with pytest.raises(ConcurrencyLimited) as info:
        gate.admit("a.b")
    assert info.value.message == (
        "a.b is at its max_concurrency of 2: all 2 of its slots are held by running tasks"
    )
    for slot in held:
        assert slot is not None
        slot.release()
    gate.admit("a.b").release()
    slots.close()
