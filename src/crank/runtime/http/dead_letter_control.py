"""The dead-letter routes: list them, redrive one or every one of a capability, purge.

A dead letter is a task that ended ``dead`` (its attempts ran out, or it crashed).
Redriving puts it back on its queue as if new (``Broker.redrive``): the same id, input
and priority, 0 attempts; once whatever killed it is fixed, it runs and succeeds.
Purging deletes it for good. Every answer comes from the broker, like the task routes
(:mod:`crank.runtime.http.task_control`), with the same guard (token, limits).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool

from crank.errors import ValidationFailed
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
from crank.runtime.http.request_parsing import only_parameters
from crank.runtime.http.responses import JSONResponse, error_response, json_or_not_json
from crank.runtime.http.task_control import (
    _CALLER_FILTER,
    _CURSOR,
    _LIMIT,
    MAX_FILTER_LENGTH,
    page_answer,
    task_query,
)
from crank.runtime.logs import get_logger

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

    from crank.runtime.brokers.contract import DeadLetterChange
    from crank.runtime.http.services import RuntimeServices

log = get_logger("crank.runtime.http")

# -- what the routes declare for /openapi.json -----------------------------------------------

_TASK_ID = Param("task_id", "path", {"type": "string"}, required=True)
_CAPABILITY_FILTER = Param(
    "capability",
    "query",
    {"type": "string", "minLength": 1, "maxLength": MAX_FILTER_LENGTH},
    description="Only dead letters of this capability.",
)
_CAPABILITY_PATH = Param(
    "capability",
    "path",
    {"type": "string", "minLength": 1, "maxLength": MAX_FILTER_LENGTH},
    required=True,
    description="Every dead letter of this capability (the id its tasks run as; it need not "
    "be served any more).",
)
_NOT_DEAD = (409, "NOT_A_DEAD_LETTER: the task is not dead; error.task_status says what it is.")
_NO_TASK = (404, "TASK_NOT_FOUND: no such task, or it expired.")

#: The answer about one dead letter: the task (after a redrive, before a purge) and what
#: happened to it.
_ONE_ANSWER: dict[str, Any] = {
    "allOf": [
        component_ref("Task"),
        {
            "type": "object",
            "required": ["outcome"],
            "properties": {"outcome": {"enum": ["redriven", "purged"]}},
        },
    ]
}
_BULK_ANSWER: dict[str, Any] = {
    "type": "object",
    "required": ["capability", "outcome", "count"],
    "properties": {
        "capability": {"type": "string"},
        "outcome": {"enum": ["redriven", "purged"]},
        "count": {"type": "integer", "minimum": 0, "description": "How many dead letters."},
    },
}

LIST_DEAD_LETTERS = Operation(
    operation_id="listDeadLetters",
    summary="Dead letters, newest first, page by page, from the broker.",
    description="`GET /v1/tasks?status=dead` with the same filters, page and cursor.",
    parameters=(_CAPABILITY_FILTER, _CALLER_FILTER, _CURSOR, _LIMIT),
    responses=(
        Reply(200, "A page of dead letters.", {"application/json": component_ref("TaskPage")}),
        *errors(*GUARD_ERRORS, 400, TASK_NOT_JSON, BROKER_DOWN),
    ),
)

REDRIVE_ONE = Operation(
    operation_id="redriveDeadLetter",
    summary="Put a dead letter back on its queue: it runs again.",
    description=(
        "The task becomes `pending` with 0 attempts and no error, and keeps its id, input, "
        "priority and idempotency key; it is claimed after the tasks already waiting at its "
        "priority. A task that is not dead answers 409 and is left as it is."
    ),
    parameters=(_TASK_ID,),
    responses=(
        Reply(200, "Back on the queue (status pending).", {"application/json": _ONE_ANSWER}),
        *errors(*GUARD_ERRORS, NO_PARAMETERS, _NO_TASK, _NOT_DEAD, BROKER_DOWN),
    ),
)

REDRIVE_ALL = Operation(
    operation_id="redriveDeadLetters",
    summary="Put every dead letter of a capability back on its queue.",
    parameters=(_CAPABILITY_PATH,),
    responses=(
        Reply(200, "How many went back (0: none was there).", {"application/json": _BULK_ANSWER}),
        *errors(*GUARD_ERRORS, 400, BROKER_DOWN),
    ),
)

PURGE_ONE = Operation(
    operation_id="purgeDeadLetter",
    summary="Delete a dead letter for good.",
    description=(
        "The task, its events and its idempotency key are deleted; the answer holds the task "
        "as it was. A task that is not dead answers 409 and is left as it is."
    ),
    parameters=(_TASK_ID,),
    responses=(
        Reply(200, "Deleted; the task as it was.", {"application/json": _ONE_ANSWER}),
        *errors(*GUARD_ERRORS, NO_PARAMETERS, _NO_TASK, _NOT_DEAD, DONE_BUT_NOT_JSON, BROKER_DOWN),
    ),
)

PURGE_ALL = Operation(
    operation_id="purgeDeadLetters",
    summary="Delete every dead letter of a capability for good.",
    parameters=(_CAPABILITY_PATH,),
    responses=(
        Reply(200, "How many were deleted (0: none).", {"application/json": _BULK_ANSWER}),
        *errors(*GUARD_ERRORS, 400, BROKER_DOWN),
    ),
)


def bulk_capability(request: Request) -> str:
    """The capability a bulk action names (its path), 1 to 200 characters."""
    capability = str(request.path_params["capability"])
    if not 1 <= len(capability) <= MAX_FILTER_LENGTH:
        raise ValidationFailed(
            f"path parameter capability: 1 to {MAX_FILTER_LENGTH} characters",
            hint="name a capability id",
            errors=[{"path": "path:capability", "message": "1 to 200 characters"}],
        )
    return capability


class DeadLetterControl:
    """The dead-letter handlers (mixed into :class:`~crank.runtime.http.routes.Handlers`)."""

    s: RuntimeServices

    async def list_dead_letters(self, request: Request) -> Response:
        """``GET /v1/dead-letters``: a page of dead letters (see :data:`LIST_DEAD_LETTERS`)."""
        try:
            query = task_query(request, status="dead")
            page = await run_in_threadpool(self.s.broker.list_tasks, query)
        except Exception as exc:
            return error_for(exc)
        return page_answer(page)

    async def redrive_dead_letter(self, request: Request) -> Response:
        """``POST /v1/dead-letters/{task_id}/redrive`` (see :data:`REDRIVE_ONE`)."""
        return await self._one(request, "redriven")

    async def purge_dead_letter(self, request: Request) -> Response:
        """``DELETE /v1/dead-letters/{task_id}`` (see :data:`PURGE_ONE`)."""
        return await self._one(request, "purged")

    async def redrive_dead_letters(self, request: Request) -> Response:
        """``POST /v1/capabilities/{capability}/dead-letters/redrive`` (see :data:`REDRIVE_ALL`)."""
        return await self._all(request, "redriven")

    async def purge_dead_letters(self, request: Request) -> Response:
        """``DELETE /v1/capabilities/{capability}/dead-letters`` (see :data:`PURGE_ALL`)."""
        return await self._all(request, "purged")

    async def _one(self, request: Request, outcome: str) -> Response:
        task_id = request.path_params["task_id"]
        broker = self.s.broker
        act = broker.redrive if outcome == "redriven" else broker.purge_dead_letter
        try:
            only_parameters(request)
            change: DeadLetterChange | None = await run_in_threadpool(act, task_id)
        except Exception as exc:
            return error_for(exc)
        if change is None:
            return task_not_found(task_id)
        if not change.changed:
            status = change.task.status
            return error_response(
                409,
                "NOT_A_DEAD_LETTER",
                f"task {task_id} is not a dead letter: it is {status}",
                hint=f"only dead tasks can be {outcome}; GET /v1/tasks/{task_id} shows it",
                id=task_id,
                task_status=status,
            )
        log.info("dead_letter_" + outcome, task_id=task_id, capability=change.task.capability)
        return json_or_not_json(
            {**task_doc(change.task), "outcome": outcome}, task_id, done=outcome
        )

    async def _all(self, request: Request, outcome: str) -> Response:
        broker = self.s.broker
        try:
            only_parameters(request)  # a filter it does not take must not purge everything
            capability = bulk_capability(request)
            redrive = outcome == "redriven"
            act = broker.redrive_dead_letters if redrive else broker.purge_dead_letters
            count = await run_in_threadpool(act, capability)
        except Exception as exc:
            return error_for(exc)
        log.info("dead_letters_" + outcome, capability=capability, count=count)
        return JSONResponse({"capability": capability, "outcome": outcome, "count": count})


__all__ = [
    "LIST_DEAD_LETTERS",
    "PURGE_ALL",
    "PURGE_ONE",
    "REDRIVE_ALL",
    "REDRIVE_ONE",
    "DeadLetterControl",
    "bulk_capability",
]
