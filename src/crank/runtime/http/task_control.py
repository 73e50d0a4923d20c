"""Looking at tasks and acting on them: list tasks, cancel one, redrive or purge dead letters.

The handlers of :class:`TaskControl` are registered on the route table next to the
others (:mod:`crank.runtime.http.routes`), each with the operation declared here.
Every answer comes from the broker (:meth:`~crank.runtime.brokers.contract.Broker.list_tasks`
and friends), never from this process's memory, so what they show survives a restart.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool

from crank.errors import ValidationFailed
from crank.manifest.findings import non_finite_number
from crank.runtime.brokers.contract import MAX_PAGE, TASK_STATUSES, TaskQuery, cursor_is_valid
from crank.runtime.http.answers import error_for, task_doc, task_not_found
from crank.runtime.http.operations import (
    BROKER_DOWN,
    DONE_BUT_NOT_JSON,
    GUARD_ERRORS,
    NO_PARAMETERS,
    TASK_NOT_JSON,
    Operation,
    Param,
    Reply,
    component_ref,
    errors,
)
from crank.runtime.http.request_parsing import CALLER_PATTERN, only_parameters
from crank.runtime.http.responses import (
    JSONResponse,
    error_response,
    json_or_not_json,
    not_json,
)
from crank.runtime.logs import get_logger

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

    from crank.runtime.brokers.contract import TaskPage
    from crank.runtime.http.services import RuntimeServices

DEFAULT_PAGE = 50
MAX_FILTER_LENGTH = 200
_CALLER = re.compile(CALLER_PATTERN)
log = get_logger("crank.runtime.http")

# -- what the routes declare for /openapi.json -----------------------------------------------

_CURSOR = Param(
    "cursor",
    "query",
    {"type": "string", "pattern": "^[0-9]{1,18}$"},
    description="The `next_cursor` of the page before; leave it out for the newest tasks.",
)
_LIMIT = Param(
    "limit",
    "query",
    {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": DEFAULT_PAGE},
    description="Tasks per page.",
)
_CAPABILITY = Param(
    "capability",
    "query",
    {"type": "string", "minLength": 1, "maxLength": MAX_FILTER_LENGTH},
    description="Only tasks of this capability (the id they run as, not a deprecated one).",
)
_CALLER_FILTER = Param(
    "caller",
    "query",
    {"type": "string", "pattern": CALLER_PATTERN},
    description="Only tasks this caller submitted (its `X-Crank-Caller`).",
)
_STATUS = Param(
    "status",
    "query",
    {"enum": list(TASK_STATUSES)},
    description="Only tasks in this status.",
)

LIST_TASKS = Operation(
    operation_id="listTasks",
    summary="Tasks, newest first, page by page, from the broker.",
    description=(
        "Filters combine (all must hold). A page may hold fewer than `limit` tasks and still "
        "have a `next_cursor` when the broker stopped looking to keep one request short: "
        "follow `next_cursor` until it is null."
    ),
    parameters=(_STATUS, _CAPABILITY, _CALLER_FILTER, _CURSOR, _LIMIT),
    responses=(
        Reply(200, "A page of tasks.", {"application/json": component_ref("TaskPage")}),
        *errors(*GUARD_ERRORS, 400, TASK_NOT_JSON, BROKER_DOWN),
    ),
)

_TASK_ID = Param("task_id", "path", {"type": "string"}, required=True)

#: The answer to a cancel: the task as it stands after it, and what happened.
CANCEL_ANSWER_SCHEMA: dict[str, Any] = {
    "allOf": [
        component_ref("Task"),
        {
            "type": "object",
            "required": ["outcome", "message"],
            "properties": {
                "outcome": {"enum": ["cancelled", "stopping"]},
                "message": {"type": "string"},
            },
        },
    ]
}

CANCEL_TASK = Operation(
    operation_id="cancelTask",
    summary="Cancel a task; the answer says whether it was stopped before it ran.",
    description=(
        "A pending task (or one waiting to be retried) is taken off the queue and never runs: "
        "200, outcome `cancelled`, status `cancelled`. A running one is told: its handler "
        "sees `ctx.cancelled` and ends the task `cancelled` when it stops (an async handler "
        "at its next await, at its deadline at the latest); a handler that finishes first "
        "ends it `succeeded`: 202, outcome `stopping`, status still `running`. A task that "
        "has ended answers 409 `TASK_FINISHED`. Asking again is harmless."
    ),
    parameters=(_TASK_ID,),
    responses=(
        Reply(200, "Cancelled before it ran.", {"application/json": CANCEL_ANSWER_SCHEMA}),
        Reply(
            202, "Running: its worker was told to stop.", {"application/json": CANCEL_ANSWER_SCHEMA}
        ),
        *errors(
            *GUARD_ERRORS,
            NO_PARAMETERS,
            (404, "TASK_NOT_FOUND: no such task, or it expired."),
            (409, "TASK_FINISHED: the task ended before; error.task_status says how."),
            DONE_BUT_NOT_JSON,
            BROKER_DOWN,
        ),
    ),
)

#: What a cancel answer says happened, by its outcome.
_CANCEL_MESSAGES = {
    "cancelled": "the task was waiting in the queue: it is cancelled and will never run",
    "stopping": "the task is running: its worker was told, its handler sees ctx.cancelled and "
    "the task ends cancelled when it stops (at its deadline at the latest), or succeeded if "
    "it finished first",
}

# -- reading the query string --------------------------------------------------------------

_LIST_PARAMETERS = ("status", "capability", "caller", "cursor", "limit")


def _invalid(where: str, message: str, hint: str) -> ValidationFailed:
    return ValidationFailed(
        f"query parameter {where}: {message}",
        hint=hint,
        errors=[{"path": f"query:{where}", "message": message}],
    )


def _one(request: Request, name: str) -> str | None:
    values = request.query_params.getlist(name)
    if len(values) > 1:
        raise _invalid(name, "given more than once", f"send ?{name}= once")
    return values[0] if values else None


def task_query(request: Request, *, status: str | None = None) -> TaskQuery:
    """The :class:`TaskQuery` of a list request's query string; every problem is a 400
    naming the parameter (``query:limit``), an unknown parameter included (a typo must not
    silently list everything). ``status`` fixes the status (the dead-letter routes)."""
    known = _LIST_PARAMETERS if status is None else _LIST_PARAMETERS[1:]
    for name in request.query_params:
        if name not in known:
            raise _invalid(name[:40], "not a parameter of this list", f"use {', '.join(known)}")
    wanted = _one(request, "status") if status is None else status
    if wanted is not None and wanted not in TASK_STATUSES:
        raise _invalid(
            "status", f"{wanted[:40]!r} is not a status", f"use one of {', '.join(TASK_STATUSES)}"
        )
    capability = _one(request, "capability")
    if capability is not None and not 1 <= len(capability) <= MAX_FILTER_LENGTH:
        raise _invalid("capability", f"1 to {MAX_FILTER_LENGTH} characters", "name a capability id")
    caller = _one(request, "caller")
    if caller is not None and not _CALLER.fullmatch(caller):
        raise _invalid(
            "caller", f"does not match {CALLER_PATTERN}", "name a caller as it sends itself"
        )
    cursor = _one(request, "cursor")
    if cursor is not None and not cursor_is_valid(cursor):
        raise _invalid(
            "cursor",
            f"{cursor[:40]!r} is not a cursor",
            "send the next_cursor of the page before, unchanged, or leave it out",
        )
    raw_limit = _one(request, "limit")
    limit = DEFAULT_PAGE
    if raw_limit is not None:
        if not (raw_limit.isascii() and raw_limit.isdigit() and 1 <= int(raw_limit) <= MAX_PAGE):
            raise _invalid(
                "limit", f"not an integer from 1 to {MAX_PAGE}", f"e.g. ?limit={DEFAULT_PAGE}"
            )
        limit = int(raw_limit)
    return TaskQuery(
        status=wanted,
        capability=capability,
        caller=caller,
        cursor=cursor,
        limit=limit,
    )


def page_doc(page: TaskPage) -> dict[str, Any]:
    return {"tasks": [t.as_dict() for t in page.tasks], "next_cursor": page.next_cursor}


def page_answer(page: TaskPage) -> Response:
    """A page of tasks as JSON; 500 ``TASK_NOT_JSON`` naming the first task whose stored
    error holds a NaN or an infinity (see :func:`~.responses.not_json`)."""
    doc = page_doc(page)
    try:
        return JSONResponse(doc)
    except ValueError:
        task = next(t for t in doc["tasks"] if non_finite_number(t) is not None)
        subject = f"task {task['id']}, listed in this page,"
        error = not_json(task["id"], task, subject=subject)
        return JSONResponse({"error": error}, status_code=500)


class TaskControl:
    """The task-control handlers (mixed into :class:`~crank.runtime.http.routes.Handlers`)."""

    s: RuntimeServices

    async def list_tasks(self, request: Request) -> Response:
        """``GET /v1/tasks``: a page of tasks, newest first (see :data:`LIST_TASKS`).

        The broker is read on a thread of Starlette's pool rather than the I/O thread
        that carries submits: a long list must not hold submits up.
        """
        try:
            query = task_query(request)
            page = await run_in_threadpool(self.s.broker.list_tasks, query)
        except Exception as exc:
            return error_for(exc)
        return page_answer(page)

    async def cancel_task(self, request: Request) -> Response:
        """``DELETE /v1/tasks/{task_id}``: stop a task (see :data:`CANCEL_TASK`)."""
        task_id = request.path_params["task_id"]
        try:
            only_parameters(request)
            cancellation = await self.s.gateway.io.call(lambda: self.s.broker.cancel(task_id))
        except Exception as exc:
            return error_for(exc)
        if cancellation is None:
            return task_not_found(task_id)
        task = cancellation.task
        if cancellation.outcome == "finished":
            return error_response(
                409,
                "TASK_FINISHED",
                f"task {task_id} already ended: {task.status}",
                hint=f"nothing to cancel; GET /v1/tasks/{task_id} shows how it ended",
                id=task_id,
                task_status=task.status,
            )
        log.info("task_cancel", task_id=task_id, outcome=cancellation.outcome)
        doc = {
            **task_doc(task),
            "outcome": cancellation.outcome,
            "message": _CANCEL_MESSAGES[cancellation.outcome],
        }
        status = 200 if cancellation.outcome == "cancelled" else 202
        done = "cancelled" if status == 200 else "told to stop"
        return json_or_not_json(doc, task_id, done=done, status_code=status)


__all__ = [
    "CANCEL_TASK",
    "LIST_TASKS",
    "TaskControl",
    "page_answer",
    "page_doc",
    "task_query",
]
