"""The broker contract: the protocol every queue backend implements, and its value types.

One module holds all of it: the value types (:class:`TaskSpec`, :class:`TaskRecord`,
:class:`Claim`, :class:`ClaimOptions`, :class:`QueueStats`, :class:`TaskQuery`,
:class:`TaskSummary`, :class:`TaskPage`, :class:`Cancellation`, :class:`DeadLetterChange`),
the :class:`Broker`
protocol, and the single-item operations written once over the batch ones (a
backend subclasses :class:`Broker` and implements the abstract methods; see
:mod:`crank.runtime.brokers` for ``open_broker``).

Semantics shared by all backends (memory, SQLite, Redis Streams):

* at-least-once delivery: a claimed task is invisible for ``visibility_timeout_s``;
  if it is neither acked nor failed nor extended by then, it is delivered again;
* ``ack`` stores the result (kept ``result_ttl_s``) and ends the task;
* ``fail`` with ``client_fault=True`` (invalid input, a declared non-retryable
  error: the caller's fault) ends the task ``failed``: not retried, not a dead
  letter, expired with results after ``result_ttl_s``;
* ``fail`` with ``retryable=True`` re-queues it after exponential backoff with
  jitter until ``max_attempts``; after that (or when not retryable) it goes to
  the dead-letter queue (status ``dead``) with its error and attempts;
* an ``idempotency_key`` seen before, with the same capability and input (their
  :func:`input_fingerprint`), returns the first task instead of a new one; with
  another capability or input, the submit answers :class:`IdempotencyKeyReused`
  (never the other task). Keys are opaque to the broker: whoever submits scopes
  them (the HTTP gateway prefixes the caller, see :func:`scoped_idempotency_key`);
* higher ``priority`` is claimed first; within a priority, oldest first (the
  Redis broker compares priority bands, see :func:`priority_band`);
* ``submit_many`` / ``claim(ClaimOptions(..., limit=N))`` / ``ack_many`` batch the
  round trips;
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
  once more has every event (the end of the stream is the task's final status);
* ``cancel`` takes a pending task off the queue for good, or tells the worker holding
  a running one (``listen_for_cancels``), whose handler then sees ``ctx.cancelled``;
  a cancelled task ends ``cancelled``: kept ``result_ttl_s``, not retried, no dead
  letter;
* ``redrive`` puts a dead letter back on its queue as if new (attempts 0, no error,
  same id, input, priority and place in the list); ``purge_dead_letter`` deletes one
  for good; both have a form for every dead letter of a capability;
* ``list_tasks`` pages through the tasks the broker holds, newest first (the order
  they were queued), filtered by status, capability and caller;
* results are pushed, not polled: ``wait_for_result`` (and its asyncio twin
  ``wait_for_result_async``) returns as soon as the task ends, woken by a notice
  the backend sends once the outcome is stored (see :mod:`.notices`);
  ``submit_many(..., watch=True)`` watches the new tasks in the same round trip.
"""

from __future__ import annotations

import json
import os
import re
import time
from abc import abstractmethod
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal, Protocol, get_args, runtime_checkable

from crank.errors import CrankError

# The bands are shared with the generated KEDA scalers, so they live below both layers.
from crank.routing.queues import MAX_BAND as MAX_BAND
from crank.routing.queues import PRIORITY_BANDS as PRIORITY_BANDS
from crank.routing.queues import priority_band as priority_band

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence

_new_object = object.__new__

#: the environment variable that sets :data:`SAFETY_POLL_S` (seconds).
SAFETY_POLL_ENV = "CRANK_RESULT_SAFETY_POLL_S"
#: a waiter that heard nothing reads the task from the broker this often anyway (lost
#: notices cost this long, never a result).
SAFETY_POLL_S = 1.0


def _safety_poll_from_env() -> float:
    raw = os.environ.get(SAFETY_POLL_ENV, "")
    try:
        value = float(raw)
    except ValueError:
        return SAFETY_POLL_S  # unset or not a number: the default
    return value if value > 0 else SAFETY_POLL_S


SAFETY_POLL_S = _safety_poll_from_env()

TaskStatus = Literal["pending", "running", "retrying", "succeeded", "failed", "dead", "cancelled"]
#: every status a task can have, in the order of its life.
TASK_STATUSES: tuple[TaskStatus, ...] = get_args(TaskStatus)
FINAL_STATUSES: frozenset[str] = frozenset({"succeeded", "failed", "dead", "cancelled"})


class IdempotencyKeyReused(CrankError):
    """A submit reused an idempotency key bound to another capability or input (HTTP 409).

    Carries no trace of the task that owns the key: a request never learns about,
    let alone receives, a task it did not create.
    """

    def __init__(self, key: str) -> None:
        super().__init__(
            "the Idempotency-Key was already used for a request with another capability or input",
            hint="send a new key for each distinct request; reuse a key only to retry the very "
            "same request (same capability, same input)",
        )
        self.key = key


def input_fingerprint(capability: str, payload: Mapping[str, Any]) -> str:
    """The SHA-256 of a task's capability and input as canonical JSON (sorted keys, no
    spaces): what an idempotency key is bound to."""
    import hashlib  # here: it loads OpenSSL's libcrypto (~3.5 MB), which a worker never needs

    canonical = json.dumps(
        [capability, payload], sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def scoped_idempotency_key(scope: str | None, key: str) -> str:
    """The key as a broker stores it: ``<scope>:<key>``, so two callers' keys never meet.

    ``scope`` names the caller (None or empty for anonymous callers); a ``:`` or ``%``
    in it is percent-encoded, so no scope can pass for another.
    """
    scope = (scope or "").replace("%", "%25").replace(":", "%3A")
    return f"{scope}:{key}"


#: a task's priority is an integer from -MAX_PRIORITY to MAX_PRIORITY (the HTTP API and
#: the Python client refuse others).
MAX_PRIORITY = 100
#: an idempotency key: 1 to MAX_IDEMPOTENCY_KEY visible ASCII characters, no spaces (what
#: survives every HTTP client and proxy unchanged).
MAX_IDEMPOTENCY_KEY = 200
IDEMPOTENCY_KEY_PATTERN = "^[!-~]+$"
_IDEMPOTENCY_KEY = re.compile(IDEMPOTENCY_KEY_PATTERN)
#: what names a caller (``X-Crank-Caller``, a client's ``caller``): a name safe as a
#: metric label and as the scope of idempotency keys.
CALLER_PATTERN = "^[A-Za-z0-9._@-]{1,64}$"


def valid_priority(value: object) -> bool:
    """Whether ``value`` is a task priority: an integer (not a bool) within the bound."""
    return isinstance(value, int) and not isinstance(value, bool) and abs(value) <= MAX_PRIORITY


def valid_idempotency_key(value: object) -> bool:
    """Whether ``value`` is an idempotency key (see ``IDEMPOTENCY_KEY_PATTERN``)."""
    return (
        isinstance(value, str)
        and 1 <= len(value) <= MAX_IDEMPOTENCY_KEY
        and _IDEMPOTENCY_KEY.fullmatch(value) is not None
    )


@dataclass(frozen=True)
class TaskSpec:
    """What a client submits."""

    capability: str
    payload: Mapping[str, Any]
    priority: int = 0
    max_attempts: int = 3
    idempotency_key: str | None = None
    timeout_s: float | None = None
    #: who called (for deprecation counters and logs), request/trace ids, and the W3C
    #: ``traceparent`` of the span that submitted it (the worker's span continues it).
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
    #: when someone asked a running task to stop (:meth:`Broker.cancel`); None: nobody.
    cancel_requested_at: float | None = None

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
            cancel_requested_at=None,
        )
        return record

    @property
    def done(self) -> bool:
        return self.status in FINAL_STATUSES

    @property
    def requested(self) -> str:
        """The capability id the caller asked for (``meta.requested``: a deprecated id
        routed to this capability), else the capability itself."""
        requested = self.meta.get("requested") if self.meta else None
        return requested if isinstance(requested, str) else self.capability

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
            "cancel_requested_at": self.cancel_requested_at,
        }


#: What a batch submit gives back per task: its record, or why it was refused.
Submitted = TaskRecord | IdempotencyKeyReused


@dataclass(frozen=True)
class Claim:
    """A delivered task plus the receipt needed to ack/fail it."""

    task: TaskRecord
    #: backend-specific delivery handle (a stream entry id, a lease token).
    receipt: str
    #: 1 on first delivery, 2+ on redelivery.
    attempt: int


def band_priorities(band: int) -> tuple[int, int | None]:
    """The priorities in ``band`` as (nearest to 0, farthest; None: unbounded)."""
    if band == 0:
        return 0, 0
    magnitude = abs(band)
    low = 1 << (magnitude - 1)
    high: int | None = None if magnitude == MAX_BAND else (1 << magnitude) - 1
    if band > 0:
        return low, high
    return -low, None if high is None else -high


@dataclass(frozen=True)
class QueueStats:
    #: pending tasks (waiting or waiting to be retried) per capability.
    pending: Mapping[str, int]
    running: int
    dead: int
    #: how long the longest-waiting task a claim could take now has waited for a worker:
    #: since it was submitted (or redriven, or given back), or for a retry since its
    #: backoff ended. Retries still backing off are not in it (see ``backing_off``): they
    #: wait on purpose, and a downstream outage must not read as workers falling behind.
    oldest_pending_age_s: float
    #: the same tasks per capability and :func:`priority_band`.
    pending_by_priority: Mapping[str, Mapping[int, int]] = field(default_factory=dict)
    #: of the pending, retries still waiting out their backoff (no claim takes them
    #: before it ends), per capability; capabilities with none are left out.
    backing_off: Mapping[str, int] = field(default_factory=dict)

    def ready(self) -> dict[str, int]:
        """Pending tasks a claim could take now, per capability: the work for workers
        (retries backing off left out; capabilities with none left out)."""
        ready = {cap: n - self.backing_off.get(cap, 0) for cap, n in self.pending.items()}
        return {cap: n for cap, n in ready.items() if n > 0}


@dataclass(frozen=True)
class ClaimOptions:
    """What one claim asks for: who claims, which capabilities, how many, for how long.

    Every claiming call (:meth:`Broker.claim`, :meth:`Broker.ack_and_claim`,
    :meth:`Broker.begin_ack_and_claim`) takes one; a worker builds it once and
    changes only ``limit`` between calls (``dataclasses.replace``).
    """

    #: this worker's name in the broker (``recover(consumer)`` finds its tasks by it).
    consumer: str
    #: capability ids to claim from (kept sorted, without repeats); None = every one.
    capabilities: tuple[str, ...] | None = None
    #: the most tasks one claim delivers.
    limit: int = 1
    #: how long a claimed task stays invisible to other claims unless extended.
    visibility_timeout_s: float = 30.0
    #: how long a claim waits for a task when none is there (``begin_ack_and_claim``
    #: never waits).
    block_s: float = 0.0

    def __post_init__(self) -> None:
        if self.capabilities is not None:
            # backends build their queries from the sorted ids; do it once, here
            object.__setattr__(self, "capabilities", tuple(sorted(set(self.capabilities))))


class PendingClaims(Protocol):
    """An ack-and-claim on its way (see :meth:`Broker.begin_ack_and_claim`)."""

    def result(self) -> list[Claim]:
        """Wait for the claims; raises ``BrokerError`` when the broker did not answer
        (then the ack may or may not have happened: acking again is harmless)."""
        ...


@dataclass(frozen=True)
class Claimed:
    """:class:`PendingClaims` that already arrived (a backend with nothing to overlap)."""

    claims: list[Claim]

    def result(self) -> list[Claim]:
        return self.claims


@dataclass(frozen=True)
class Cancellation:
    """What :meth:`Broker.cancel` did to a task.

    * ``cancelled``: it was pending (or waiting out a retry's backoff): it is off the
      queue, ended ``cancelled``, and never runs;
    * ``stopping``: a worker holds it: the worker is told, its handler sees
      ``ctx.cancelled``; the task ends ``cancelled`` when the handler stops (or
      ``succeeded`` if it finished first), and is never delivered again;
    * ``finished``: it had ended already; nothing changed.
    """

    outcome: Literal["cancelled", "stopping", "finished"]
    #: the task after the request.
    task: TaskRecord


@dataclass(frozen=True)
class DeadLetterChange:
    """What :meth:`Broker.redrive` or :meth:`Broker.purge_dead_letter` did to a task.

    ``changed`` False: the task was no dead letter (``task.status`` says what it is)
    and nothing changed. Else ``task`` is the task after a redrive (``pending``), or
    as it was before a purge (``dead``; it is gone now).
    """

    changed: bool
    task: TaskRecord


#: the most tasks one page of :meth:`Broker.list_tasks` holds.
MAX_PAGE = 500


@dataclass(frozen=True)
class TaskQuery:
    """Which tasks :meth:`Broker.list_tasks` lists, how many, and from where.

    Every filter given must hold (None: any). ``cursor`` is the ``next_cursor`` of
    the page before (None: start at the newest task); it is opaque, a backend's own
    position, and stays valid while tasks come and go.
    """

    status: TaskStatus | None = None
    capability: str | None = None
    caller: str | None = None
    limit: int = 50
    cursor: str | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.limit <= MAX_PAGE:
            raise ValueError(f"a page holds 1 to {MAX_PAGE} tasks, not {self.limit}")
        if self.cursor is not None and not cursor_is_valid(self.cursor):
            raise ValueError(f"{self.cursor!r} is not a cursor this broker handed out")

    @property
    def before(self) -> int | None:
        """The cursor as the position to list below (every backend numbers its tasks in
        the order they were queued); None: from the newest."""
        return None if self.cursor is None else int(self.cursor)


def cursor_is_valid(cursor: str) -> bool:
    """Whether ``cursor`` can be a page's cursor: a whole number (a backend's position)."""
    # 18 digits: a SQLite rowid and a Redis score are signed 64-bit, 19 digits could overflow
    return cursor.isascii() and cursor.isdigit() and 0 < len(cursor) <= 18


@dataclass(frozen=True)
class TaskSummary:
    """A task as a list shows it: what it is and how it stands, without its input or result
    (a page stays small however large those are; :meth:`Broker.get` has them)."""

    id: str
    capability: str
    status: TaskStatus
    priority: int
    attempts: int
    max_attempts: int
    created_at: float
    updated_at: float
    #: the id the task was submitted under (a deprecated id routes to ``capability``).
    requested: str
    #: who submitted it (``X-Crank-Caller``), when it was said.
    caller: str | None
    error: Mapping[str, Any] | None

    @classmethod
    def of(cls, record: TaskRecord) -> TaskSummary:
        caller = record.meta.get("caller") if record.meta else None
        return cls(
            id=record.id,
            capability=record.capability,
            status=record.status,
            priority=record.priority,
            attempts=record.attempts,
            max_attempts=record.max_attempts,
            created_at=record.created_at,
            updated_at=record.updated_at,
            requested=record.requested,
            caller=caller if isinstance(caller, str) else None,
            error=dict(record.error) if record.error else None,
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "capability": self.capability,
            "requested": self.requested,
            "caller": self.caller,
            "status": self.status,
            "priority": self.priority,
            "attempts": self.attempts,
            "max_attempts": self.max_attempts,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "error": dict(self.error) if self.error else None,
        }


@dataclass(frozen=True)
class TaskPage:
    """One page of :meth:`Broker.list_tasks`: newest first."""

    tasks: tuple[TaskSummary, ...]
    #: the cursor of the next page; None when no task is left after this page.
    next_cursor: str | None


#: outcomes larger than this (bytes of JSON) are not carried; the waiter reads the task.
INLINE_LIMIT = 16_384


#: the status word of a notice that a streaming task published events (not an end).
EVENT = "event"
_NOTICE_KINDS = FINAL_STATUSES | {EVENT}


@dataclass(frozen=True)
class Notice:
    """A task ended: its final status, attempts and (when small) its outcome as JSON.

    Or, with the status :data:`EVENT`, a streaming task published events up to number
    ``attempts`` (watchers of a live stream are told of each).
    """

    task_id: str
    status: TaskStatus | Literal["event"]
    attempts: int
    #: the result (succeeded) or the error (failed, dead) as JSON text; None: not carried.
    body: str | None = None

    def encode(self) -> bytes:
        head = f"{self.task_id} {self.status} {self.attempts}"
        if self.body is None or len(self.body) > INLINE_LIMIT:
            return head.encode()
        return f"{head}\n{self.body}".encode()

    @classmethod
    def decode(cls, data: bytes | str) -> Notice | None:
        """The notice in ``data``; None when it is not one (ignored by listeners)."""
        text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
        head, newline, body = text.partition("\n")
        parts = head.split(" ")
        if len(parts) != 3 or parts[1] not in _NOTICE_KINDS or not parts[2].isdigit():
            return None
        status: Any = parts[1]
        return cls(parts[0], status, int(parts[2]), body if newline else None)

    @property
    def ended(self) -> bool:
        """The task ended (not an event notice)."""
        return self.status != EVENT

    def finish(self, record: TaskRecord) -> TaskRecord | None:
        """``record`` (the task as submitted) as this notice says it ended; None when the
        notice carries no outcome (then read the task from the broker), or is an event's."""
        if self.body is None or self.status == EVENT:
            return None
        outcome = json.loads(self.body)
        # a copy of the record with its end, built as TaskRecord.claimed builds one (a
        # waiter makes one per task, on the way from the notice to the caller)
        ended = _new_object(TaskRecord)
        ended.__dict__.update(record.__dict__)
        if self.status == "succeeded":
            ended.__dict__.update(status="succeeded", attempts=self.attempts, result=outcome)
            ended.__dict__["error"] = None
            return ended
        error = outcome if isinstance(outcome, dict) else {"message": str(outcome)}
        ended.__dict__.update(status=self.status, attempts=self.attempts, error=error)
        return ended


class ResultListener(Protocol):
    """What :meth:`Broker.wait_for_result` needs of a process's listener for the notices
    of ended tasks (:class:`~crank.runtime.brokers.notices.ResultNotices`)."""

    def expect(self, task_ids: Iterable[str]) -> None:
        """Keep the notices of these tasks (before they can end)."""
        ...

    def wait(self, task_id: str, timeout_s: float) -> Notice | None:
        """Block up to ``timeout_s`` for the task's notice."""
        ...

    def wait_async(self, task_id: str, timeout_s: float) -> Awaitable[Notice | None]:
        """:meth:`wait` without blocking the event loop."""
        ...

    def forget(self, task_id: str) -> None:
        """Done waiting for the task."""
        ...


@runtime_checkable
class Broker(Protocol):
    """A durable task queue. Implementations must be safe across processes.

    A backend subclasses this class and implements its abstract methods, the batch
    operations one round trip each; the single-item operations (``submit``,
    ``claim``, ``ack``, ``extend``) and ``begin_ack_and_claim`` are written here
    over the batch ones, and a backend overrides them only to do better.
    """

    url: str

    # -- submit ------------------------------------------------------------------------

    @abstractmethod
    def submit_many(self, specs: Sequence[TaskSpec], *, watch: bool = False) -> list[Submitted]:
        """Queue ``specs`` in one round trip; per spec, its task (new, or the one its
        idempotency key already names) or :class:`IdempotencyKeyReused`.

        ``watch=True`` also watches the tasks (:meth:`watch`) in the same round trip,
        so this process is told when each ends (:meth:`result_notices`; forget each
        there when done waiting).
        """
        ...

    def submit(self, spec: TaskSpec, *, watch: bool = False) -> TaskRecord:
        """Queue one task; raises :class:`IdempotencyKeyReused` where its key is taken."""
        submitted = self.submit_many([spec], watch=watch)[0]
        if isinstance(submitted, IdempotencyKeyReused):
            raise submitted
        return submitted

    # -- claim -------------------------------------------------------------------------

    @abstractmethod
    def ack_and_claim(
        self, items: Sequence[tuple[Claim, Any]], options: ClaimOptions
    ) -> list[Claim]:
        """``ack_many(items)`` then ``claim(options)`` in one round trip (the worker loop)."""
        ...

    def claim(self, options: ClaimOptions) -> list[Claim]:
        """Up to ``options.limit`` tasks, waiting up to ``options.block_s`` for one."""
        return self.ack_and_claim([], options)

    def ended_by_claims(self) -> list[tuple[str, str]]:
        """``(capability, status)`` of each task this broker's claims ended since the
        last call, though no handler ran it to its end: ``dead`` (delivered more than
        ``max_attempts`` times, its workers died or hung: ``WORKER_LOST``) or
        ``cancelled`` (cancelled while a worker that then died held it). Nobody else
        sees them end: the worker process that claimed counts them in its metrics. A
        backend whose claims end no task returns nothing."""
        return []

    def begin_ack_and_claim(
        self, items: Sequence[tuple[Claim, Any]], options: ClaimOptions
    ) -> PendingClaims:
        """Start ``ack_and_claim`` without waiting for work (``options.block_s`` is not
        used); ``result()`` of the answer waits for the broker's reply.

        Every call's ``result()`` must be taken (a connection is held until then).
        Results that are not JSON raise ``TypeError``/``ValueError`` here, before
        anything is sent. An in-process backend has nothing to overlap: this default
        does the work before it returns.
        """
        if options.block_s:
            options = replace(options, block_s=0.0)
        return Claimed(self.ack_and_claim(items, options))

    # -- finish ------------------------------------------------------------------------

    @abstractmethod
    def ack_many(self, items: Sequence[tuple[Claim, Any]]) -> None: ...

    def ack(self, claim: Claim, result: Any) -> None:
        self.ack_many([(claim, result)])

    @abstractmethod
    def fail(
        self,
        claim: Claim,
        error: Mapping[str, Any],
        *,
        retryable: bool,
        client_fault: bool = False,
    ) -> TaskStatus:
        """Record a failed attempt; returns the task's status after it.

        ``failed`` when ``client_fault`` (the input was refused or a declared
        non-retryable error was raised: retrying cannot help and it is no dead letter;
        kept ``result_ttl_s`` like a result); else ``retrying`` while ``retryable`` and
        attempts are left; else ``dead`` (a dead letter). A claim that was lost to
        redelivery changes nothing and returns the task's current status.
        """
        ...

    @abstractmethod
    def extend_many(self, claims: Sequence[Claim], visibility_timeout_s: float) -> list[bool]:
        """:meth:`extend` for a batch in one round trip (the worker heartbeat)."""
        ...

    def extend(self, claim: Claim, visibility_timeout_s: float) -> bool:
        """Keep a long task invisible; False if the claim was lost to redelivery."""
        return self.extend_many([claim], visibility_timeout_s)[0]

    @abstractmethod
    def release(self, claims: Sequence[Claim]) -> None:
        """Give claimed tasks back unrun (graceful shutdown); attempts are not counted."""
        ...

    @abstractmethod
    def recover(self, consumer: str) -> int:
        """Make every task claimed by ``consumer`` (known dead) deliverable again now.

        The supervisor calls this when it sees a worker process die, so its
        in-flight tasks are redelivered within seconds instead of after the
        visibility timeout. Returns how many tasks were recovered.
        """
        ...

    # -- cancelling --------------------------------------------------------------------

    @abstractmethod
    def cancel(self, task_id: str) -> Cancellation | None:
        """Stop a task (None: no such task, or it expired).

        A pending or retrying task ends ``cancelled`` at once, off the queue: no claim
        delivers it afterwards (``cancelled``). A running one is marked, and the
        consumer holding it is told through :meth:`listen_for_cancels` (``stopping``);
        from then on, whatever its worker does ends the task: a ``fail`` or a
        ``release`` ends it ``cancelled`` (never retried, never a dead letter), an
        ``ack`` ``succeeded`` (it finished first), a lease that runs out or a
        ``recover`` ``cancelled``. A finished task is left as it is (``finished``).
        Asking again is harmless.
        """
        ...

    @abstractmethod
    def cancel_requested(self, task_ids: Sequence[str]) -> set[str]:
        """Which of these tasks were asked to stop while running (a worker's heartbeat
        asks, in case a notice from :meth:`listen_for_cancels` was lost)."""
        ...

    @abstractmethod
    def listen_for_cancels(
        self, consumer: str, on_cancel: Callable[[str], None]
    ) -> Callable[[], None]:
        """Call ``on_cancel(task_id)`` (from a thread of this process) soon after a task
        ``consumer`` holds is asked to stop; returns the function that stops listening.

        Start listening before claiming: a notice sent before is not repeated (Redis:
        a channel per consumer; SQLite: a local socket listed under the consumer's
        name; memory: a direct call).
        """
        ...

    # -- dead letters --------------------------------------------------------------------

    @abstractmethod
    def redrive(self, task_id: str) -> DeadLetterChange | None:
        """Put a dead letter back on its queue (None: no such task).

        It becomes ``pending`` with 0 attempts and no error, keeps its id, input,
        priority, idempotency key and place in :meth:`list_tasks`, and is claimed
        after the tasks already waiting at its priority; the events of a streaming
        task are kept, and new ones are numbered after them (as for a retry). A
        task that is not ``dead`` is left as it is (``changed`` False).
        """
        ...

    @abstractmethod
    def redrive_dead_letters(self, capability: str) -> int:
        """:meth:`redrive` every dead letter of ``capability``; returns how many."""
        ...

    @abstractmethod
    def purge_dead_letter(self, task_id: str) -> DeadLetterChange | None:
        """Delete a dead letter for good: the task, its events and its idempotency key
        (None: no such task). A task that is not ``dead`` is left (``changed`` False)."""
        ...

    @abstractmethod
    def purge_dead_letters(self, capability: str) -> int:
        """:meth:`purge_dead_letter` every dead letter of ``capability``; returns how many."""
        ...

    # -- streaming events --------------------------------------------------------------

    @abstractmethod
    def publish_events(self, task_id: str, events: Sequence[Mapping[str, Any]]) -> None:
        """Append streaming events of a running task (numbered from 1, in order)."""
        ...

    @abstractmethod
    def read_events(
        self, task_id: str, after: int, *, block_s: float = 0.0, limit: int = 100
    ) -> list[tuple[int, Mapping[str, Any]]]:
        """Up to ``limit`` events numbered above ``after``, oldest first, as ``(seq, event)``.

        Waits up to ``block_s`` for at least one when there is none yet.
        """
        ...

    # -- results: waiting for a task to end ---------------------------------------------

    def result_notices(self) -> ResultListener | None:
        """This process's listener for the notices of ended tasks, started on first use
        (a backend that sends none returns None, and waiters read the task now and then).

        Waiters of one process share it: on Redis one subscription, on SQLite one local
        socket, whatever the number of tasks waited for.
        """
        return None

    def listen_in(self, loop: asyncio.AbstractEventLoop) -> None:
        """Deliver this process's result notices from ``loop`` (an HTTP server's event
        loop, running in this thread), where the backend can: no thread between a
        notice and the requests that wait for it. Without it (the default) a thread
        of the listener delivers them."""
        return

    def watch(self, task_ids: Sequence[str]) -> list[TaskStatus | None]:
        """Have this process told (through :meth:`result_notices`) when these tasks end.

        Returns each task's status now (None: no such task, or it expired), read after
        the watch is in place, so a task that ends later is always told.
        """
        return [None if record is None else record.status for record in map(self.get, task_ids)]

    def wait_for_result(self, task_id: str, timeout_s: float | None = None) -> TaskRecord | None:
        """Block until the task ends, woken by its notice; the result is stored before.

        Returns the ended task (``record.done``), or the task as it stands when
        ``timeout_s`` passes first (None: wait as long as it takes), or None when there
        is no such task (never submitted, or its result expired). Costs two broker round
        trips plus the wait (watch, read the result); a notice that was lost delays the
        answer by at most :data:`SAFETY_POLL_S`. Safe from any thread.
        """
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        notices = self.result_notices()
        if notices is None:
            return self._poll_for_result(task_id, deadline)
        notices.expect([task_id])
        try:
            [status] = self.watch([task_id])
            if status is None:
                return None
            if status in FINAL_STATUSES:
                return self.get(task_id)
            while True:
                left = SAFETY_POLL_S if deadline is None else deadline - time.monotonic()
                if left > 0:
                    notices.wait(task_id, min(left, SAFETY_POLL_S))
                record = self.get(task_id)
                if (
                    record is None
                    or record.done
                    or (deadline is not None and time.monotonic() >= deadline)
                ):
                    return record
        finally:
            notices.forget(task_id)

    async def wait_for_result_async(
        self, task_id: str, timeout_s: float | None = None
    ) -> TaskRecord | None:
        """:meth:`wait_for_result` for asyncio: the wait blocks no thread, the two round
        trips run in worker threads."""
        import asyncio  # here: a worker process running sync handlers never loads it (~10 MB)

        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        notices = await asyncio.to_thread(self.result_notices)
        if notices is None:
            return await asyncio.to_thread(self._poll_for_result, task_id, deadline)
        notices.expect([task_id])
        try:
            [status] = await asyncio.to_thread(self.watch, [task_id])
            if status is None:
                return None
            if status in FINAL_STATUSES:
                return await asyncio.to_thread(self.get, task_id)
            while True:
                left = SAFETY_POLL_S if deadline is None else deadline - time.monotonic()
                if left > 0:
                    await notices.wait_async(task_id, min(left, SAFETY_POLL_S))
                record = await asyncio.to_thread(self.get, task_id)
                if (
                    record is None
                    or record.done
                    or (deadline is not None and time.monotonic() >= deadline)
                ):
                    return record
        finally:
            notices.forget(task_id)

    def _poll_for_result(self, task_id: str, deadline: float | None) -> TaskRecord | None:
        """Read the task until it ends (a backend without notices): every 1 ms at
        first, growing to 50 ms."""
        pause = 0.001
        while True:
            record = self.get(task_id)
            if record is None or record.done:
                return record
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return record
            time.sleep(pause if left is None else min(pause, left))
            pause = min(pause * 2, 0.05)

    # -- inspect -----------------------------------------------------------------------

    @abstractmethod
    def get(self, task_id: str) -> TaskRecord | None: ...

    @abstractmethod
    def stats(self) -> QueueStats: ...

    @abstractmethod
    def dead_letters(self, limit: int = 100) -> list[TaskRecord]: ...

    @abstractmethod
    def list_tasks(self, query: TaskQuery) -> TaskPage:
        """The tasks ``query`` asks for, newest first (the order they were queued), as
        the broker holds them: history survives a restart of every process.

        Expired tasks (finished ones past ``result_ttl_s``) are not listed. A page
        may hold fewer than ``query.limit`` tasks and still have a ``next_cursor``
        when a backend stopped looking to keep one call short (Redis, with filters
        that few tasks match); follow ``next_cursor`` until it is None.
        """
        ...

    @abstractmethod
    def ping(self) -> bool: ...

    @abstractmethod
    def close(self) -> None: ...
