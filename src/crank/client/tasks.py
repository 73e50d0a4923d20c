"""The values the clients hand out: :class:`TaskInfo`, :class:`TaskEvent`, :class:`TaskRequest`."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from crank.client.errors import ClientError, InvalidTask, TaskFailed
from crank.runtime.brokers.contract import (
    CALLER_PATTERN,
    MAX_IDEMPOTENCY_KEY,
    valid_idempotency_key,
)

if TYPE_CHECKING:
    from crank.runtime.brokers.contract import TaskRecord

#: the statuses a finished task can have (docs/runtime.md).
FINAL_STATUSES = frozenset({"succeeded", "failed", "dead", "cancelled"})


@dataclass(frozen=True)
class TaskInfo:
    """A task as the server (or the broker) knows it at one moment."""

    id: str
    capability: str
    status: str
    attempts: int = 0
    max_attempts: int = 0
    created_at: float = 0.0
    updated_at: float = 0.0
    result: Any = None
    error: Mapping[str, Any] | None = None
    #: the id the task was submitted under (a deprecated id routes to ``capability``).
    requested: str = ""
    priority: int = 0
    #: when the task was asked to stop (``cancel()``); None: never.
    cancel_requested_at: float | None = None

    @property
    def done(self) -> bool:
        return self.status in FINAL_STATUSES

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> TaskInfo:
        """From the task document of ``POST /v1/tasks`` / ``GET /v1/tasks/{id}``."""
        error = doc.get("error")
        return cls(
            id=str(doc["id"]),
            capability=str(doc.get("capability", "")),
            status=str(doc.get("status", "")),
            attempts=int(doc.get("attempts") or 0),
            max_attempts=int(doc.get("max_attempts") or 0),
            created_at=float(doc.get("created_at") or 0.0),
            updated_at=float(doc.get("updated_at") or 0.0),
            result=doc.get("result"),
            error=dict(error) if isinstance(error, Mapping) else None,
            requested=str(doc.get("requested") or doc.get("capability", "")),
            priority=int(doc.get("priority") or 0),
            cancel_requested_at=_number_or_none(doc.get("cancel_requested_at")),
        )

    @classmethod
    def from_record(cls, record: TaskRecord) -> TaskInfo:
        """From the broker's record of the task."""
        return cls(
            id=record.id,
            capability=record.capability,
            status=record.status,
            attempts=record.attempts,
            max_attempts=record.max_attempts,
            created_at=record.created_at,
            updated_at=record.updated_at,
            result=record.result,
            error=dict(record.error) if record.error else None,
            requested=record.requested,
            priority=record.priority,
            cancel_requested_at=record.cancel_requested_at,
        )

    def outcome(self) -> Any:
        """The result of a finished task, or :class:`TaskFailed` raised with its error."""
        if self.status == "succeeded":
            return self.result
        error = dict(self.error or {})
        raise TaskFailed(
            self.id,
            str(error.get("code") or "WORKER_FAILED"),
            str(error.get("message") or f"task {self.id} ended {self.status}"),
            task_status=self.status,
            error=error,
            declared=declared_by_status(self.status),
            attempts=self.attempts,
        )


@dataclass(frozen=True)
class TaskEvent:
    """One event a streaming task emitted; ``id`` numbers them from 1 per task."""

    id: int
    data: Any


@dataclass(frozen=True)
class TaskList:
    """One page of ``GET /v1/tasks`` (:meth:`Client.list_tasks`): the tasks, newest first,
    without input or result, and the cursor of the next page (None: the last one)."""

    tasks: tuple[TaskInfo, ...]
    next_cursor: str | None
    #: each task's caller (``X-Crank-Caller``), by task id, where it had one.
    callers: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> TaskList:
        rows = [row for row in doc.get("tasks") or () if isinstance(row, Mapping)]
        cursor = doc.get("next_cursor")
        return cls(
            tasks=tuple(TaskInfo.from_document(row) for row in rows),
            next_cursor=str(cursor) if cursor else None,
            callers={str(r["id"]): str(r["caller"]) for r in rows if r.get("caller")},
        )


@dataclass(frozen=True)
class TaskRequest:
    """One task to queue with ``submit_many`` (the arguments of ``submit``)."""

    capability: str
    input: Mapping[str, Any]
    priority: int = 0
    idempotency_key: str | None = None
    #: attempts before the task goes to the dead-letter queue.
    max_attempts: int = 3
    #: the task's deadline; None: the capability's ``timeout_s``.
    timeout_s: float | None = None
    #: extra fields kept with the task (shown in logs; ``caller`` names the producer).
    meta: Mapping[str, Any] = field(default_factory=dict)


def _number_or_none(value: object) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


_CALLER = re.compile(CALLER_PATTERN)


def declared_by_status(status: str | None) -> bool | None:
    """``TaskFailed.declared`` from a finished task's status alone: a ``failed`` task
    ended with a code its manifest declares (or the caller's input was refused), as the
    server's synchronous call answers 422; a ``dead`` one may have either kind of code,
    which only the server's manifest tells (None)."""
    return True if status == "failed" else None


def positive_seconds(value: object) -> bool:
    """Whether ``value`` is a number of seconds a client can wait: finite, above 0."""
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )


def check_timeout(timeout: object, *, zero: bool) -> float | None:
    """A caller's ``timeout`` (seconds; None: no limit): finite and above 0, or 0 too
    where ``zero`` (look once, do not wait); else a :class:`ClientError`."""
    if timeout is None or positive_seconds(timeout):
        return timeout  # type: ignore[return-value]
    if zero and timeout == 0 and not isinstance(timeout, bool):
        return 0.0
    least = "0 or more" if zero else "above 0"
    raise ClientError(
        f"timeout {timeout!r:.40} is not a number of seconds {least}",
        hint="pass the seconds to wait, or None to wait as long as it takes",
        subject=str(timeout),
    )


def check_after(after: object) -> int:
    """The ``after`` of ``events()``: the id of an event received, a whole number from 0
    (0: from the first event); else a :class:`ClientError` before anything is sent."""
    if isinstance(after, int) and not isinstance(after, bool) and after >= 0:
        return after
    raise ClientError(
        f"after {after!r:.40} is not the id of an event (a whole number, 0 or more)",
        hint="pass the id of the last event received (TaskEvent.id), or 0 for all of them",
        subject=str(after),
    )


def check_caller(caller: object) -> None:
    """A client's ``caller``: what the server takes as ``X-Crank-Caller`` (a metric label
    and the scope of idempotency keys), or a :class:`ClientError` saying so."""
    if caller is not None and not (isinstance(caller, str) and _CALLER.fullmatch(caller)):
        raise ClientError(
            f"caller {caller!r:.80} cannot name a caller",
            hint="use 1 to 64 letters, digits and . _ @ - (e.g. 'billing-service')",
            subject=str(caller),
        )


def check_task_request(capability: object, payload: object) -> None:
    """Refuse, before sending, what no server would accept."""
    if not isinstance(capability, str) or not capability:
        raise InvalidTask(
            f"the capability must be a non-empty id string, not {capability!r}",
            hint="name a capability as the server lists it, e.g. 'demo.echo'",
            subject=capability,
        )
    if not isinstance(payload, Mapping):
        raise InvalidTask(
            f"the input of {capability} must be a mapping (a JSON object), "
            f"not {type(payload).__name__}",
            hint="pass the capability's input as a dict",
            subject=capability,
        )


def check_idempotency_key(key: object, capability: str) -> None:
    """An ``idempotency_key`` the server takes (None: the client makes one), or an
    :class:`InvalidTask`: as a header it could not be sent at all (an ``int``, ``é``, a
    line break), and an empty one is no key: the server's own check."""
    if key is None or valid_idempotency_key(key):
        return
    size = f"{len(key)} characters" if isinstance(key, str) else type(key).__name__
    raise InvalidTask(
        f"the idempotency key of a {capability} task must be 1 to {MAX_IDEMPOTENCY_KEY} "
        f"visible ASCII characters without spaces (got {size})",
        hint="use a UUID per logical request, or None for a fresh one",
        subject=capability,
    )


def check_id(value: object, what: str = "task id") -> str:
    """``value`` when it can name a task (or, as ``what`` says, a capability), else an
    :class:`InvalidTask`: a string that is not empty, ``.`` or ``..`` and holds no ``/``.
    No id crank makes is otherwise, and in a URL path such a one would name another
    route (``../dead-letters/...``)."""
    hint = (
        "pass the id a submit returned (Task.id)"
        if what == "task id"
        else "pass the capability's id, e.g. text.echo"
    )
    if not isinstance(value, str):
        raise InvalidTask(
            f"a {what} must be a string, not {type(value).__name__} {value!r:.40}",
            hint=hint,
            subject=str(value),
        )
    if value in ("", ".", "..") or "/" in value:
        raise InvalidTask(
            f"{what} {value!r:.200} cannot be one: empty, '.', '..' or holding a '/'",
            hint=hint,
            subject=value,
        )
    return value


def encode_json(capability: str, payload: Any) -> bytes:
    """The JSON body, or :class:`InvalidTask` naming what cannot be sent."""
    try:
        return json.dumps(payload, separators=(",", ":"), allow_nan=False).encode()
    except (TypeError, ValueError) as exc:
        raise InvalidTask(
            f"the input of {capability} cannot be sent as JSON: {exc}",
            hint="use only dicts, lists, strings, finite numbers, booleans and None",
            subject=capability,
        ) from None


__all__ = [
    "FINAL_STATUSES",
    "TaskEvent",
    "TaskInfo",
    "TaskRequest",
    "check_after",
    "check_caller",
    "check_id",
    "check_idempotency_key",
    "check_task_request",
    "check_timeout",
    "encode_json",
    "positive_seconds",
]
