"""Waiting for a task: long-polls (``GET /v1/tasks/{id}?wait=``), pauses between looks
when the server answers at once, and deadlines."""

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


#: seconds one ``?wait=`` asks the server to wait (it allows up to 55): an answer comes
#: before common proxies (60 s idle) would cut the connection.
LONG_POLL_S = 30.0


class LongPolls:
    """How a client waits for a task over HTTP: each look asks the server to wait for
    the task's end (``?wait=``, up to :data:`LONG_POLL_S` and the caller's deadline).

    A server that answered an unfinished task well before the wait asked for does not
    know ``?wait=`` (an older crank): the looks are then spaced by :class:`ResultPolls`.
    """

    def __init__(self) -> None:
        self._polls = ResultPolls()
        self._asked = 0.0
        self._sent = 0.0

    def wait_s(self, left: float | None) -> float:
        """Seconds the next look asks the server to wait (``left``: the caller's time)."""
        self._asked = LONG_POLL_S if left is None else max(0.0, min(left, LONG_POLL_S))
        self._sent = time.monotonic()
        return self._asked

    def pause_s(self) -> float:
        """Seconds to wait before the next look, after an answer of an unfinished task."""
        answered_in = time.monotonic() - self._sent
        if answered_in >= 0.9 * self._asked:
            return 0.0  # the server waited as asked: look again at once
        return self._polls.next_s()


def seconds_left(deadline: float | None) -> float | None:
    return None if deadline is None else deadline - time.monotonic()


def deadline_of(timeout_s: float | None) -> float | None:
    return None if timeout_s is None else time.monotonic() + timeout_s


__all__ = ["LONG_POLL_S", "LongPolls", "ResultPolls", "deadline_of", "seconds_left"]
