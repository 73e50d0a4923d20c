"""The broker protocol every queue backend implements, and its value types.

Semantics shared by all backends (memory, SQLite, Redis Streams):

* at-least-once delivery: a claimed task is invisible for ``visibility_timeout_s``;
  if it is neither acked nor failed nor extended by then, it is delivered again;
* ``ack`` stores the result (kept ``result_ttl_s``) and ends the task;
* ``fail`` with ``retryable=True`` re-queues it after exponential backoff with
  jitter until ``max_attempts``; after that (or when not retryable) it goes to
  the dead-letter queue with its error and attempts;
* an ``idempotency_key`` seen before returns the first task instead of a new one;
* higher ``priority`` is claimed first; within a priority, oldest first;
* ``submit_many`` / ``claim(limit=N)`` / ``ack_many`` batch the round trips;
  ``begin_ack_and_claim`` sends the ack of one batch and the claim of the next
  and returns at once, so the worker runs a batch while the broker works on
  the next one (a network backend overlaps them; an in-process one finishes
  before it returns);
* a task delivered more than ``max_attempts`` times without an ack or a fail
  (its worker keeps dying) goes to the dead-letter queue with ``WORKER_LOST``;
* ``release`` puts claimed tasks back unrun, ``recover(consumer)`` makes the
  tasks of a dead consumer deliverable at once (that attempt counts);
* ``publish_events`` appends the events a streaming task emits while it runs,
  numbered 1, 2, 3... per task in publish order; ``read_events(after=n)``
  returns those numbered above ``n`` (waiting up to ``block_s`` for one) and
  they expire with the task's result (``result_ttl_s``). Events are published
  before the task is acked, so a reader that sees the task done and then reads
  once more has every event (the end of the stream is the task's final status).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:
    from collections.abc import Collection, Mapping, Sequence

_new_object = object.__new__

TaskStatus = Literal["pending", "running", "retrying", "succeeded", "failed", "dead"]
FINAL_STATUSES: frozenset[str] = frozenset({"succeeded", "failed", "dead"})


@dataclass(frozen=True)
class TaskSpec:
    """What a client submits."""

    capability: str
    payload: Mapping[str, Any]
    priority: int = 0
    max_attempts: int = 3
    idempotency_key: str | None = None
    timeout_s: float | None = None
    #: who called (for deprecation counters and logs), request/trace ids.
    meta: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TaskRecord:
    """A task as the broker knows it at one moment."""

    id: str
    capability: str
    payload: Mapping[str, Any]
    status: TaskStatus
    priority: int = 0
    attempts: int = 0
    max_attempts: int = 3
    idempotency_key: str | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
    result: Any = None
    error: Mapping[str, Any] | None = None
    timeout_s: float | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def claimed(
        cls,
        id: str,
        capability: str,
        payload: Mapping[str, Any],
        priority: int,
        attempts: int,
        max_attempts: int,
        idempotency_key: str | None,
        created_at: float,
        updated_at: float,
        timeout_s: float | None,
        meta: Mapping[str, Any],
    ) -> TaskRecord:
        """A running task as a backend decoded it from its own storage, built without
        the frozen dataclass's per-field ``object.__setattr__`` (a worker builds one per
        task; this is 5x cheaper). Every field is set; a test holds this to ``__init__``."""
        record = _new_object(cls)
        record.__dict__.update(
            id=id,
            capability=capability,
            payload=payload,
            status="running",
            priority=priority,
            attempts=attempts,
            max_attempts=max_attempts,
            idempotency_key=idempotency_key,
            created_at=created_at,
            updated_at=updated_at,
            result=None,
            error=None,
            timeout_s=timeout_s,
            meta=meta,
        )
        return record

    @property
    def done(self) -> bool:
        return self.status in FINAL_STATUSES

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "capability": self.capability,
            "status": self.status,
            "priority": self.priority,
            "attempts": self.attempts,
            "max_attempts": self.max_attempts,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "result": self.result,
            "error": dict(self.error) if self.error else None,
        }


@dataclass(frozen=True)
class Claim:
    """A delivered task plus the receipt needed to ack/fail it."""

    task: TaskRecord
    #: backend-specific delivery handle (a stream entry id, a lease token).
    receipt: str
    #: 1 on first delivery, 2+ on redelivery.
    attempt: int


@dataclass(frozen=True)
class QueueStats:
    pending: Mapping[str, int]
    running: int
    dead: int
    oldest_pending_age_s: float


class PendingClaims(Protocol):
    """An ack-and-claim on its way (see :meth:`Broker.begin_ack_and_claim`)."""

    def result(self) -> list[Claim]:
        """Wait for the claims; raises ``BrokerError`` when the broker did not answer
        (then the ack may or may not have happened: acking again is harmless)."""
        ...


@runtime_checkable
class Broker(Protocol):
    """A durable task queue. Implementations must be safe across processes."""

    url: str

    def submit(self, spec: TaskSpec) -> TaskRecord: ...

    def submit_many(self, specs: Sequence[TaskSpec]) -> list[TaskRecord]: ...

    def claim(
        self,
        consumer: str,
        *,
        capabilities: Collection[str] | None = None,
        limit: int = 1,
        visibility_timeout_s: float = 30.0,
        block_s: float = 0.0,
    ) -> list[Claim]: ...

    def ack_and_claim(
        self,
        items: Sequence[tuple[Claim, Any]],
        consumer: str,
        *,
        capabilities: Collection[str] | None = None,
        limit: int = 1,
        visibility_timeout_s: float = 30.0,
        block_s: float = 0.0,
    ) -> list[Claim]:
        """``ack_many(items)`` then ``claim(...)`` in one round trip (the worker loop)."""
        ...

    def begin_ack_and_claim(
        self,
        items: Sequence[tuple[Claim, Any]],
        consumer: str,
        *,
        capabilities: Collection[str] | None = None,
        limit: int = 1,
        visibility_timeout_s: float = 30.0,
    ) -> PendingClaims:
        """Start ``ack_and_claim(..., block_s=0)``; ``result()`` of the answer waits for it.

        Every call's ``result()`` must be taken (a connection is held until then).
        Results that are not JSON raise ``TypeError``/``ValueError`` here, before
        anything is sent.
        """
        ...

    def ack(self, claim: Claim, result: Any) -> None: ...

    def ack_many(self, items: Sequence[tuple[Claim, Any]]) -> None: ...

    def fail(self, claim: Claim, error: Mapping[str, Any], *, retryable: bool) -> TaskStatus:
        """Record a failed attempt; returns ``retrying`` or ``dead`` (or ``failed``)."""
        ...

    def extend(self, claim: Claim, visibility_timeout_s: float) -> bool:
        """Keep a long task invisible; False if the claim was lost to redelivery."""
        ...

    def extend_many(self, claims: Sequence[Claim], visibility_timeout_s: float) -> list[bool]:
        """:meth:`extend` for a batch in one round trip (the worker heartbeat)."""
        ...

    def release(self, claims: Sequence[Claim]) -> None:
        """Give claimed tasks back unrun (graceful shutdown); attempts are not counted."""
        ...

    def recover(self, consumer: str) -> int:
        """Make every task claimed by ``consumer`` (known dead) deliverable again now.

        The supervisor calls this when it sees a worker process die, so its
        in-flight tasks are redelivered within seconds instead of after the
        visibility timeout. Returns how many tasks were recovered.
        """
        ...

    def publish_events(self, task_id: str, events: Sequence[Mapping[str, Any]]) -> None:
        """Append streaming events of a running task (numbered from 1, in order)."""
        ...

    def read_events(
        self, task_id: str, after: int, *, block_s: float = 0.0, limit: int = 100
    ) -> list[tuple[int, Mapping[str, Any]]]:
        """Up to ``limit`` events numbered above ``after``, oldest first, as ``(seq, event)``.

        Waits up to ``block_s`` for at least one when there is none yet.
        """
        ...

    def get(self, task_id: str) -> TaskRecord | None: ...

    def stats(self) -> QueueStats: ...

    def dead_letters(self, limit: int = 100) -> list[TaskRecord]: ...

    def ping(self) -> bool: ...

    def close(self) -> None: ...


def open_broker(url: str, **options: Any) -> Broker:
    """``memory://``, ``sqlite:///path/to/file.db`` or ``redis://host:port/db``.

    See :func:`crank.runtime.brokers.open_broker` for the options.
    """
    from crank.runtime.brokers import open_broker as _open

    return _open(url, **options)
