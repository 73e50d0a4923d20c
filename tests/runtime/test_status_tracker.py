"""How long the queue stats are cached: by how long reading them takes, a slow one aside.

The clock is the tracker's own (``time.monotonic`` in its module), moved by the broker's
``stats()`` as a deep queue's count would take it: no waiting on a real clock.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from crank.runtime import status_tracker
from crank.runtime.brokers import open_broker
from crank.runtime.brokers.contract import TaskSpec
from crank.runtime.status_tracker import STATS_TIME_SHARE, StatusTracker

if TYPE_CHECKING:
    from collections.abc import Iterator

    from crank.runtime.brokers.contract import QueueStats


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class TimedStats:
    """The broker's ``stats()``, taking ``takes`` seconds of the clock; counts reads."""

    def __init__(self, broker: Any, clock: Clock) -> None:
        self.real = broker.stats
        self.clock = clock
        self.takes = 0.0
        self.reads = 0
        broker.stats = self

    def __call__(self) -> QueueStats:
        self.reads += 1
        self.clock.now += self.takes
        stats: QueueStats = self.real()
        return stats


@pytest.fixture
def timed(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[StatusTracker, TimedStats, Clock]]:
    clock = Clock()
    monkeypatch.setattr(status_tracker.time, "monotonic", clock)
    broker = open_broker("memory://")
    try:
        status = StatusTracker(broker, min_workers=0, ttl_s=0.25)
        yield status, TimedStats(broker, clock), clock
    finally:
        broker.close()


def read_after(status: StatusTracker, clock: Clock, seconds: float) -> None:
    clock.now += seconds
    status.queue_stats()


def test_a_quick_count_is_read_again_after_ttl_s(timed: Any) -> None:
    status, stats, clock = timed
    stats.takes = 0.001
    status.queue_stats()
    read_after(status, clock, 0.2)
    assert stats.reads == 1
    read_after(status, clock, 0.1)
    assert stats.reads == 2


def test_a_slow_count_is_read_a_twentieth_of_the_time(timed: Any) -> None:
    status, stats, clock = timed
    stats.takes = 0.1  # a deep SQLite queue: cached 2 s, not 0.25 s
    status.queue_stats()
    status.queue_stats(fresh=True)
    assert stats.reads == 2
    assert status.stats_ttl() == pytest.approx(0.1 / STATS_TIME_SHARE)
    read_after(status, clock, 1.5)
    assert stats.reads == 2
    read_after(status, clock, 0.6)
    assert stats.reads == 3


def test_one_slow_read_does_not_keep_the_count_long(timed: Any) -> None:
    """A read that took a second once (a busy machine, a pause) made the next 20 s of
    admissions and /v1/status answers use that count."""
    status, stats, clock = timed
    stats.takes = 0.001
    status.queue_stats()
    stats.takes = 1.0
    status.queue_stats(fresh=True)
    stats.takes = 0.001
    assert status.stats_ttl() == pytest.approx(0.25)
    status.broker.submit_many([TaskSpec("demo.a", {})])
    read_after(status, clock, 0.3)
    assert stats.reads == 3
    stats_now, _ = status.queue_stats(wait=False)
    assert stats_now is not None and stats_now.pending == {"demo.a": 1}
