"""Throughput and failure rate over the last minutes, from the worker processes' counters.

The worker processes count every finished attempt by capability and outcome
(``crank_tasks_total``). A rate needs two readings: :class:`OutcomeWindow` keeps a
reading now and then (when the overview is looked at, at most every
``min_gap_s``, and one when the console starts, when the counters are zero) for
``window_s``, and compares the newest with the oldest it still holds. When nobody
looked for a while, the oldest reading is older than the window: the rate is then
over that longer span, and the page says so (``span_s``) instead of pretending.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

Counts = dict[tuple[str, str], float]


@dataclass(frozen=True)
class CapabilityRates:
    """One capability's finished attempts over the span, by outcome."""

    capability: str
    succeeded: int
    failed: int
    retrying: int
    dead: int

    @property
    def attempts(self) -> int:
        return self.succeeded + self.failed + self.retrying + self.dead

    @property
    def failure_ratio(self) -> float | None:
        """Attempts that did not succeed over all attempts; None without attempts."""
        return None if self.attempts == 0 else (self.attempts - self.succeeded) / self.attempts


@dataclass(frozen=True)
class Rates:
    """What finished between two readings ``span_s`` apart."""

    span_s: float
    capabilities: tuple[CapabilityRates, ...]

    @property
    def total(self) -> CapabilityRates:
        rows = self.capabilities
        return CapabilityRates(
            "all",
            sum(r.succeeded for r in rows),
            sum(r.failed for r in rows),
            sum(r.retrying for r in rows),
            sum(r.dead for r in rows),
        )

    def per_minute(self, count: int) -> float:
        return 60.0 * count / self.span_s if self.span_s > 0 else 0.0


class OutcomeWindow:
    """Readings of the outcome counters over the last ``window_s`` (see the module doc)."""

    def __init__(
        self,
        read: Callable[[], Counts],
        *,
        window_s: float = 300.0,
        min_gap_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read = read
        self.window_s = window_s
        self.min_gap_s = min_gap_s
        self._clock = clock
        self._lock = threading.Lock()
        self._readings: deque[tuple[float, Counts]] = deque()
        self.reading()

    def reading(self) -> tuple[float, Counts]:
        """Read the counters now; kept when the last kept reading is ``min_gap_s`` old."""
        now, counts = self._clock(), dict(self._read())
        with self._lock:
            if not self._readings or now - self._readings[-1][0] >= self.min_gap_s:
                self._readings.append((now, counts))
            # drop readings older than the window, but keep the newest of those: a base
            while len(self._readings) > 2 and self._readings[1][0] <= now - self.window_s:
                self._readings.popleft()
        return now, counts

    def rates(self) -> Rates | None:
        """Attempts finished since the oldest reading kept; None while that reading is
        less than ``min_gap_s`` old (right after the start: too short a span to tell)."""
        now, counts = self.reading()
        with self._lock:
            then, base = self._readings[0]
        if now - then < self.min_gap_s:
            return None
        capabilities = sorted({cap for cap, _ in counts} | {cap for cap, _ in base})

        def finished(cap: str, status: str) -> int:
            # a counter never goes down; if it seems to, the process was restarted: count 0
            return max(0, round(counts.get((cap, status), 0.0) - base.get((cap, status), 0.0)))

        rows = tuple(
            CapabilityRates(
                cap,
                finished(cap, "succeeded"),
                finished(cap, "failed"),
                finished(cap, "retrying"),
                finished(cap, "dead"),
            )
            for cap in capabilities
        )
        return Rates(now - then, rows)


__all__ = ["CapabilityRates", "OutcomeWindow", "Rates"]
