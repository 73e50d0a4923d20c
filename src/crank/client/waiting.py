"""Waiting for a task without a notice: pauses between looks, and deadlines."""

from __future__ import annotations

import time


class ResultPolls:
    """Pauses between two looks at an unfinished task: close at first, then gently."""

    def __init__(self, first_s: float = 0.002) -> None:
        self._delay = first_s
        self._started = time.monotonic()

    def next_s(self) -> float:
        delay = self._delay
        # most tasks end within a second: look every 10-50 ms until then, then every 0.25 s
        cap = 0.05 if time.monotonic() - self._started < 1.0 else 0.25
        self._delay = min(self._delay * 2, cap)
        return delay


def seconds_left(deadline: float | None) -> float | None:
    return None if deadline is None else deadline - time.monotonic()


def deadline_of(timeout_s: float | None) -> float | None:
    return None if timeout_s is None else time.monotonic() + timeout_s


__all__ = ["ResultPolls", "deadline_of", "seconds_left"]
