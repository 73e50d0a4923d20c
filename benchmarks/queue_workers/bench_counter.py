"""A completion counter every system's no-op task bumps: shared memory, no network.

The file holds 64 slots of (owner pid, count); each process takes a free slot
once (under flock) and then increments its own count under a thread lock, so
counting costs about a microsecond and no queue pays a Redis round trip for it.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import struct
import threading

SLOTS = 64
SLOT = struct.Struct("<qq")
SIZE = SLOTS * SLOT.size

_lock = threading.Lock()
_state: dict[str, object] = {}


def create(path: str) -> None:
    with open(path, "wb") as f:
        f.write(b"\0" * SIZE)


def _attach() -> tuple[mmap.mmap, int]:
    path = os.environ["BENCH_COUNTER_FILE"]
    with open(path, "r+b") as f:
        mm = mmap.mmap(f.fileno(), SIZE)
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            for slot in range(SLOTS):
                owner, _ = SLOT.unpack_from(mm, slot * SLOT.size)
                if owner == 0:
                    SLOT.pack_into(mm, slot * SLOT.size, os.getpid(), 0)
                    return mm, slot * SLOT.size + 8
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
    raise RuntimeError("no free counter slot")


def count() -> None:
    with _lock:
        if _state.get("pid") != os.getpid():  # first call in this (possibly forked) process
            mm, offset = _attach()
            _state.update(pid=os.getpid(), mm=mm, offset=offset)
        mm = _state["mm"]
        offset = _state["offset"]
        assert isinstance(mm, mmap.mmap)
        assert isinstance(offset, int)
        (value,) = struct.unpack_from("<q", mm, offset)
        struct.pack_into("<q", mm, offset, value + 1)


def processes(path: str) -> int:
    """How many processes have counted at least one task."""
    with open(path, "rb") as f:
        data = f.read()
    return sum(1 for i in range(SLOTS) if SLOT.unpack_from(data, i * SLOT.size)[0] != 0)


def total(path: str) -> int:
    with open(path, "rb") as f:
        data = f.read()
    return sum(SLOT.unpack_from(data, i * SLOT.size)[1] for i in range(SLOTS))
