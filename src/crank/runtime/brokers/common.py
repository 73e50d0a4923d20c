"""Pieces every backend shares: ids, defaults, the error of a lost worker, the backoff
of retried tasks and the options every backend accepts (the contract itself is in
:mod:`.contract`)."""

from __future__ import annotations

import collections
import os
import random
import weakref
from dataclasses import dataclass
from typing import Any, Protocol

from crank.errors import UsageError

DEFAULT_RESULT_TTL_S = 86_400.0


def new_id() -> str:
    """32 random hex digits (as random as ``uuid4().hex``, a tenth of its cost: no UUID
    object; a server makes one per task)."""
    return os.urandom(16).hex()


def url_without_password(url: str) -> str:
    """``url`` with its password, if it has one, shown as ``***`` (for messages and logs)."""
    scheme, sep, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if not at or ":" not in creds:
        return url
    return f"{scheme}{sep}{creds.split(':', 1)[0]}:***@{host}"


def url_usage_error(url: str, why: str, hint: str | None = None) -> UsageError:
    """The error of a broker URL that cannot be used, and why."""
    url = url_without_password(url)
    return UsageError(
        f"broker URL {url!r} cannot be used: {why}",
        hint=hint
        or "use sqlite:///relative/path.db, sqlite:////absolute/path.db or "
        "redis://host:port/db (memory:// lives in one process: tests only)",
        subject=url,
    )


class EndedByClaims:
    """The tasks a broker's claims ended, kept for :meth:`Broker.ended_by_claims`
    (thread-safe; the oldest are let go past ``most``, when nobody asks)."""

    def __init__(self, most: int = 10_000) -> None:
        self._ended: collections.deque[tuple[str, str]] = collections.deque(maxlen=most)

    def add(self, capability: str, status: str) -> None:
        self._ended.append((capability, status))

    def drain(self) -> list[tuple[str, str]]:
        taken: list[tuple[str, str]] = []
        while True:
            try:
                taken.append(self._ended.popleft())
            except IndexError:
                return taken


def worker_lost_error(attempts: int) -> dict[str, Any]:
    return {
        "code": "WORKER_LOST",
        "message": f"the task was delivered {attempts} times and its worker never finished it "
        "(the worker process died or hung each time)",
        "type": "WorkerLost",
    }


#: the error of a task cancelled before its handler started.
CANCELLED_BEFORE_IT_RAN = "cancelled before it ran"
#: ... of a task cancelled while its handler ran (the handler's own error is its cause).
CANCELLED_WHILE_IT_RAN = "cancelled while it ran"
#: ... of a task cancelled while it ran whose worker went away before it stopped.
CANCELLED_WORKER_GONE = "cancelled while it ran; its worker stopped before it did"


def cancelled_error(message: str, cause: Any = None) -> dict[str, Any]:
    """The error a cancelled task ends with; ``cause``: the error it had before (the
    handler's, when it stopped by raising, or the one of the attempt before a retry)."""
    error: dict[str, Any] = {"code": "CANCELLED", "message": message, "type": "TaskCancelled"}
    if cause:
        error["cause"] = cause
    return error


@dataclass(frozen=True)
class RetryPolicy:
    """Delay before attempt ``n + 1`` of a task after ``n`` failed attempts.

    ``base_s * 2 ** (n - 1)`` capped at ``max_s``, then "full jitter" (a uniform
    draw in ``[delay / 2, delay]``) so a burst of failures does not come back
    as a burst.
    """

    base_s: float = 0.5
    max_s: float = 60.0

    def delay_s(self, failed_attempts: int, rng: random.Random | None = None) -> float:
        exponent = max(0, failed_attempts - 1)
        delay = min(self.max_s, self.base_s * (2.0 ** min(exponent, 30)))
        draw = (rng or _RNG).random()
        return delay / 2.0 + draw * delay / 2.0


_RNG = random.Random()  # noqa: S311 - jitter, not cryptography


@dataclass(frozen=True)
class BrokerOptions:
    """Tunables every backend accepts (as keyword arguments or URL query parameters)."""

    retry_base_s: float = 0.5
    retry_max_s: float = 60.0
    result_ttl_s: float = DEFAULT_RESULT_TTL_S

    @property
    def retry(self) -> RetryPolicy:
        return RetryPolicy(base_s=self.retry_base_s, max_s=self.retry_max_s)


class ForkAware(Protocol):
    def _after_fork_in_child(self) -> None:
        """In a child just forked from this process (only the forking thread runs)."""
        ...


#: the brokers of this process that hold process-local listeners (held weakly).
_FORK_AWARE: weakref.WeakSet[ForkAware] = weakref.WeakSet()


def reset_in_forked_children(broker: ForkAware) -> None:
    """Have ``broker._after_fork_in_child()`` run in each child this process forks
    while ``broker`` lives: a listener of result notices belongs to one process (its
    address is where the broker sends the notices of the tasks this process watches),
    and a child that kept its parent's would hear of its own tasks only by polling."""
    _FORK_AWARE.add(broker)


def _after_fork_in_child() -> None:
    for broker in list(_FORK_AWARE):
        broker._after_fork_in_child()


if hasattr(os, "register_at_fork"):  # not on Windows, which does not fork
    os.register_at_fork(after_in_child=_after_fork_in_child)
