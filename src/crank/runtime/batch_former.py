"""How a worker process groups the tasks it claims into batches for a batch handler.

Each capability with ``batching:`` has a queue of claimed tasks waiting for their
batch (queued tasks and synchronous HTTP calls alike: both reach the process as
claims). A batch is released

* ``full``: as soon as ``max_batch_size`` tasks wait;
* ``latency``: ``max_latency_ms`` after its oldest task reached the process;
* ``deadline``: earlier than that when a task's deadline would otherwise pass before
  the batch is done: the batch starts before the earliest deadline of its tasks by
  the capability's recent batch run time, and by at least a twentieth of that task's
  timeout (the first batch has no run time to go by).

The former only keeps time and order; the worker loop claims, runs and acks (see
:mod:`crank.runtime.shaped_loop`). Nothing here touches the broker, so a task that
waits in a batch is still held by the process (its visibility extended by the
heartbeat) and a process killed while tasks wait loses none of them.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from crank.manifest import Batching
    from crank.runtime.brokers.contract import Claim

ReleaseReason = Literal["full", "latency", "deadline"]
#: the least share of a task's timeout left to run its batch when it is released.
DEADLINE_SHARE = 0.05
#: every reason a batch is released for, in the order of the module docstring.
RELEASE_REASONS: tuple[ReleaseReason, ...] = ("full", "latency", "deadline")


@dataclass(frozen=True)
class Waiting:
    """A claimed task waiting for its batch."""

    claim: Claim
    #: when it reached the process (:func:`time.monotonic`).
    arrived: float
    #: when it times out (:func:`time.monotonic`; None: no timeout).
    deadline: float | None


@dataclass(frozen=True)
class FormedBatch:
    """A batch released to run: its tasks in arrival order and why it was released."""

    capability: str
    items: tuple[Waiting, ...]
    reason: ReleaseReason
    #: when it was released (:func:`time.monotonic`).
    released: float

    def waits(self) -> list[float]:
        """How long each task waited for the batch, in seconds."""
        return [max(0.0, self.released - item.arrived) for item in self.items]


class _Forming:
    """The tasks of one capability waiting for a batch."""

    def __init__(self, capability: str, batching: Batching) -> None:
        self.capability = capability
        self.size = batching.max_batch_size
        self.latency_s = batching.max_latency_s
        self.items: deque[Waiting] = deque()
        #: seconds the last batches of this capability ran (half old, half new).
        self.run_s = 0.0

    def release_at(self) -> tuple[float, ReleaseReason] | None:
        """When the oldest batch must run, and why (None: no task waits)."""
        if not self.items:
            return None
        if len(self.items) >= self.size:
            return self.items[0].arrived, "full"
        by_latency = self.items[0].arrived + self.latency_s
        starts = [
            w.deadline - max(self.run_s, DEADLINE_SHARE * (w.deadline - w.arrived))
            for w in self.items
            if w.deadline is not None
        ]
        if starts and min(starts) < by_latency:
            return min(starts), "deadline"
        return by_latency, "latency"

    def take(self, now: float, reason: ReleaseReason) -> FormedBatch:
        count = min(self.size, len(self.items))
        items = tuple(self.items.popleft() for _ in range(count))
        return FormedBatch(self.capability, items, reason, now)


class BatchFormer:
    """The forming batches of one worker process, per capability (module docstring)."""

    def __init__(self, batching: Mapping[str, Batching]) -> None:
        self._forming = {cap: _Forming(cap, b) for cap, b in batching.items()}

    def __contains__(self, capability: object) -> bool:
        return capability in self._forming

    def add(self, claim: Claim, arrived: float, deadline: float | None) -> None:
        self._forming[claim.task.capability].items.append(Waiting(claim, arrived, deadline))

    def room(self, capability: str) -> int:
        """How many more tasks the capability's next batch takes (0: it is full)."""
        forming = self._forming[capability]
        return max(0, forming.size - len(forming.items))

    def waiting(self) -> int:
        return sum(len(f.items) for f in self._forming.values())

    def next_release(self) -> float | None:
        """The earliest time a batch must run (None: no task waits)."""
        times = [at for f in self._forming.values() if (at := f.release_at()) is not None]
        return min(t for t, _ in times) if times else None

    def due(self, now: float, capabilities: Iterable[str] | None = None) -> list[FormedBatch]:
        """The batches to run now, oldest first (of ``capabilities`` only, when given)."""
        released: list[FormedBatch] = []
        for cap in self._forming if capabilities is None else capabilities:
            forming = self._forming[cap]
            while (at := forming.release_at()) is not None and at[0] <= now:
                released.append(forming.take(now, at[1]))
        released.sort(key=lambda b: b.items[0].arrived)
        return released

    def ran(self, capability: str, seconds: float) -> None:
        """A batch of ``capability`` took ``seconds``: later batches start that much
        before the deadline of their earliest task."""
        forming = self._forming[capability]
        forming.run_s = seconds if forming.run_s == 0.0 else (forming.run_s + seconds) / 2

    def drain(self) -> list[Waiting]:
        """Every waiting task, taken out (the process is stopping: they go back)."""
        out: list[Waiting] = []
        for forming in self._forming.values():
            out.extend(forming.items)
            forming.items.clear()
        return out


__all__ = ["RELEASE_REASONS", "BatchFormer", "FormedBatch", "ReleaseReason", "Waiting"]
