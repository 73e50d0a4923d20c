"""What several handlers answer alike: the error for an exception, a task's document."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from starlette.requests import ClientDisconnect

from crank.errors import (
    BrokerError,
    CapabilityGone,
    CapabilityNotFound,
    CrankError,
    ManifestError,
    ValidationFailed,
)
from crank.manifest.findings import quoted
from crank.runtime.brokers.contract import IdempotencyKeyReused
from crank.runtime.concurrency import ConcurrencyLimited
from crank.runtime.gateway import (
    CapabilityPaused,
    QueueFull,
    SchemaUnusable,
    WorkerUnavailable,
)
from crank.runtime.http.guard import RETRY_AFTER_S
from crank.runtime.http.limits import BodyTooLarge
from crank.runtime.http.request_parsing import UnsupportedMediaType
from crank.runtime.http.responses import error_response
from crank.runtime.logs import get_logger

if TYPE_CHECKING:
    from starlette.responses import Response

    from crank.runtime.brokers.contract import TaskRecord


#: the status of a request whose client left before its body arrived (as nginx logs it).
CLIENT_CLOSED = 499


def _seconds_to_utc_midnight() -> int:
    now = dt.datetime.now(dt.UTC)
    tomorrow = dt.datetime.combine(now.date() + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)
    return max(1, int((tomorrow - now).total_seconds()))


def error_for(exc: BaseException) -> Response:
    """The HTTP answer for an error raised while preparing or running a call."""
    if isinstance(exc, CapabilityGone):
        return error_response(
            410,
            "CAPABILITY_GONE",
            exc.message,
            hint=exc.hint,
            headers=exc.headers,  # Sunset and the successors' Link, as before the sunset
            successors=list(exc.successors),
        )
    if isinstance(exc, CapabilityNotFound):
        return error_response(404, "CAPABILITY_NOT_FOUND", exc.message, hint=exc.hint)
    if isinstance(exc, ValidationFailed):
        return error_response(400, "INVALID_INPUT", exc.message, hint=exc.hint, errors=exc.errors)
    if isinstance(exc, IdempotencyKeyReused):
        return error_response(409, "IDEMPOTENCY_KEY_REUSED", exc.message, hint=exc.hint)
    if isinstance(exc, BodyTooLarge):
        return error_response(413, "BODY_TOO_LARGE", exc.message, hint=exc.hint)
    if isinstance(exc, UnsupportedMediaType):
        return error_response(415, "UNSUPPORTED_MEDIA_TYPE", exc.message, hint=exc.hint)
    if isinstance(exc, ConcurrencyLimited):
        return error_response(
            429,
            "CONCURRENCY_LIMIT",
            exc.message,
            hint=exc.hint,
            headers={"Retry-After": str(RETRY_AFTER_S)},
            capability=exc.capability,
            max_concurrency=exc.limit,
        )
    if isinstance(exc, QueueFull):
        return error_response(
            429,
            "QUEUE_FULL",
            exc.message,
            hint=exc.hint,
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )
    if isinstance(exc, WorkerUnavailable):
        worker = exc.worker
        # waiting fixes a worker that is not ready yet, not one that failed to load
        retry = {} if worker.state == "failed" else {"Retry-After": str(RETRY_AFTER_S)}
        return error_response(
            503,
            "WORKER_UNAVAILABLE",
            exc.message,
            hint=exc.hint,
            headers=retry,
            worker=worker.name,
            worker_state=worker.state,
            reason=worker.reason,
        )
    if isinstance(exc, CapabilityPaused):
        return error_response(
            503,
            "CAPABILITY_PAUSED",
            exc.message,
            hint=exc.hint,
            headers={"Retry-After": str(_seconds_to_utc_midnight())},
        )
    if isinstance(exc, SchemaUnusable | ManifestError):
        # the served manifests' fault (a schema Python cannot check, deprecated ids that
        # route in a loop): no retry helps until they are fixed, and the broker is not
        # to blame
        code = "SCHEMA_UNUSABLE" if isinstance(exc, SchemaUnusable) else "MANIFEST_ERROR"
        get_logger("crank.runtime.http").error(code.lower(), error=exc.message)
        return error_response(500, code, exc.message, hint=exc.hint)
    if isinstance(exc, BrokerError):
        return broker_unavailable(exc.message, exc.hint)
    if isinstance(exc, CrankError):
        # other deliberate errors of the backend
        return error_response(503, "UNAVAILABLE", exc.message, hint=exc.hint)
    if isinstance(exc, ClientDisconnect):
        # nobody reads this answer: its status (nginx's 499) is for the access log and
        # the request counter, which would otherwise blame the broker for a client
        return error_response(
            CLIENT_CLOSED,
            "CLIENT_CLOSED_REQUEST",
            "the client closed the connection before its request body arrived",
            hint="nothing was queued; send the request again",
        )

    get_logger("crank.runtime.http").error("broker_failure", exc_info=exc)
    return broker_unavailable(
        f"the task broker failed: {type(exc).__name__}",
        "check that the broker (SQLite file or Redis) is reachable; the call was not queued",
    )


def broker_unavailable(message: str, hint: str | None) -> Response:
    """503 ``BROKER_UNAVAILABLE``: the broker did not answer (or failed); worth a retry
    soon, as a worker that is not ready yet is."""
    return error_response(
        503,
        "BROKER_UNAVAILABLE",
        message,
        hint=hint,
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


#: ``crank_requests_rejected_total``'s reason for each refusal a handler answers before
#: anything is queued (the guard counts its own: overload, unauthorized, a body declared
#: too large; a handler, one found too large while it was read).
_REJECTIONS: tuple[tuple[type[Exception], str], ...] = (
    (BodyTooLarge, "body_too_large"),
    (CapabilityPaused, "paused"),
    (QueueFull, "queue_full"),
    (ConcurrencyLimited, "concurrency_limit"),
)


def rejection_reason(exc: BaseException) -> str | None:
    """The ``reason`` label ``exc`` is counted under as a rejected request, or None."""
    for kind, reason in _REJECTIONS:
        if isinstance(exc, kind):
            return reason
    return None


def task_not_found(task_id: str) -> Response:
    return error_response(
        404,
        "TASK_NOT_FOUND",
        f"no task {quoted(task_id)}",
        hint="tasks expire after their result TTL",
    )


def task_doc(record: TaskRecord, *, with_input: bool = False) -> dict[str, Any]:
    """A task as the API shows it; ``with_input``: its input too (``GET
    /v1/tasks/{id}``: elsewhere the caller sent it, or it is no one's business)."""
    doc = record.as_dict()
    doc["requested"] = record.requested
    caller = record.meta.get("caller") if record.meta else None
    doc["caller"] = caller if isinstance(caller, str) else None
    if with_input:
        doc["input"] = record.payload
    return doc


__all__ = [
    "broker_unavailable",
    "error_for",
    "rejection_reason",
    "task_doc",
    "task_not_found",
]
