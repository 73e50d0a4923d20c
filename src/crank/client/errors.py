"""What the client raises and warns: one :class:`ClientError` base under :class:`CrankError`.

* :class:`ApiError`: the server refused a request (a 4xx/5xx with the documented
  ``{"error": {"code", "message", "hint"}}`` body); ``code`` is that code.
* :class:`TaskFailed`: a task ended ``failed`` or ``dead``; ``code`` is the error code
  the handler raised (one its manifest declares, when ``declared``), or the runtime's.
* :class:`TaskNotFound`: no such task (or it expired).
* :class:`TaskTimeout`: no result within the time asked for; the task goes on.
* :class:`InvalidTask`: refused before sending (no capability id, input not JSON).
* :class:`CancelNotSupported`: the server has no ``DELETE /v1/tasks/{id}``.
* :class:`ServerUnreachable`: no answer after the retries.
* :class:`BrokerUnavailable`: ``connect``'s broker cannot be reached or refused an
  operation (also a :class:`~crank.errors.BrokerError`).
* :class:`CapabilityDeprecated` is a :class:`DeprecationWarning` naming the successors.
* :class:`ClientClosed`: a call on a client after its ``close()``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from crank.errors import BrokerError, CrankError

if TYPE_CHECKING:
    from collections.abc import Mapping


class ClientError(CrankError):
    """Base of everything :mod:`crank.client` raises."""


class ApiError(ClientError):
    """The server answered a request with an error (anything but a failed task)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        hint: str | None = None,
        details: Mapping[str, Any] | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(f"HTTP {status} {code}: {message}", hint=hint, subject=code)
        #: the HTTP status (400, 404, 409, 410, 429, 503...).
        self.status = status
        #: the documented error code (``INVALID_INPUT``, ``CAPABILITY_NOT_FOUND``...).
        self.code = code
        #: the whole ``error`` object of the answer (``errors``, ``successors``... when sent).
        self.details: dict[str, Any] = dict(details or {})
        #: what ``Retry-After`` said, for 429 and 503.
        self.retry_after_s = retry_after_s


class TaskFailed(ClientError):
    """A task ended without a result: its handler raised, crashed, or ran out of attempts."""

    def __init__(
        self,
        task_id: str,
        code: str,
        message: str,
        *,
        task_status: str | None,
        error: Mapping[str, Any] | None = None,
        declared: bool | None = None,
        attempts: int | None = None,
    ) -> None:
        ended = f"ended {task_status}" if task_status else "failed"
        tries = "" if attempts is None else f" after {attempts} attempt(s)"
        super().__init__(f"task {task_id} {ended}{tries}: {code}: {message}", subject=task_id)
        self.task_id = task_id
        #: the error code: one the capability declares, or ``WORKER_FAILED``, ``INTERNAL``,
        #: ``WORKER_LOST``, ``INVALID_INPUT``... from the runtime.
        self.code = code
        #: ``failed`` or ``dead`` (see docs/runtime.md); None when the answer did not say.
        self.task_status = task_status
        #: the task's error as the broker holds it.
        self.error: dict[str, Any] = dict(error or {})
        #: True when the server said the code is one the manifest declares; None when
        #: nobody could tell (a client talking to the broker has no manifest).
        self.declared = declared
        self.attempts = attempts


class TaskNotFound(ClientError):
    """No task with that id: never submitted there, or its result expired (``result_ttl_s``)."""

    def __init__(self, task_id: str, message: str | None = None) -> None:
        super().__init__(
            message or f"no task {task_id!r}",
            hint="tasks are kept for the broker's result TTL (a day by default) after they end",
            subject=task_id,
        )
        self.task_id = task_id


class TaskTimeout(ClientError, TimeoutError):
    """The result was not there within the time asked for; the task itself goes on."""

    def __init__(
        self,
        task_id: str | None,
        timeout_s: float | None,
        *,
        why: str = "",
        message: str | None = None,
    ) -> None:
        waited = "" if timeout_s is None else f" within {timeout_s:g} s"
        name = "the task" if task_id is None else f"task {task_id}"
        super().__init__(
            # ``message`` when the limit that ran out is not the caller's (a server's 504)
            message or f"{name} did not finish{waited}{': ' + why if why else ''}",
            hint="the task goes on; ask again for its result later"
            if task_id
            else "call again later",
            subject=task_id,
        )
        self.task_id = task_id
        #: the caller's timeout (seconds), None when it gave none.
        self.timeout_s = timeout_s


class InvalidTask(ClientError):
    """A task the client refuses to send: no capability id, or an input that is not a
    JSON object."""


class CancelNotSupported(ClientError):
    """The server answered ``DELETE /v1/tasks/{id}`` with 404 or 405: it cannot cancel."""


class ServerUnreachable(ClientError):
    """No answer from the server (connection refused, reset or closed) after the retries."""


class BrokerUnavailable(ClientError, BrokerError):
    """The broker of :func:`crank.connect` cannot be reached (Redis down, a SQLite file
    that cannot be opened) or refused an operation; the message names its URL (never
    its password). A :class:`ClientError` and a :class:`~crank.errors.BrokerError`."""


class CapabilityDeprecated(DeprecationWarning):
    """A call went through a deprecated capability id; ``successors`` are the ids to use."""

    def __init__(self, requested: str, successors: tuple[str, ...], sunset: str | None) -> None:
        use = ", ".join(successors) if successors else "its successor"
        until = f" (it stops answering after {sunset})" if sunset else ""
        super().__init__(f"capability {requested} is deprecated{until}: call {use} instead")
        self.requested = requested
        self.successors = successors
        self.sunset = sunset


class ClientClosed(ClientError):
    """A call on a client after its ``close()`` (or the end of its ``with`` block): a
    closed client stays closed, whatever its transport would do if asked again."""

    def __init__(self, client: str, *, hint: str | None = None) -> None:
        super().__init__(
            f"{client} is closed: open a new client to go on",
            hint=hint or "a closed client cannot be used again; make a new one",
            subject=client,
        )
        #: the client, as the message names it (``BrokerClient of redis://...``).
        self.client = client


__all__ = [
    "ApiError",
    "BrokerUnavailable",
    "CancelNotSupported",
    "CapabilityDeprecated",
    "ClientClosed",
    "ClientError",
    "InvalidTask",
    "ServerUnreachable",
    "TaskFailed",
    "TaskNotFound",
    "TaskTimeout",
]
