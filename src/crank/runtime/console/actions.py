"""The console's task actions: cancel a task, redrive or purge dead letters.

Each is a POST form (the CSRF token, the login and read-only checks of
:meth:`~crank.runtime.console.web.ConsoleWeb.action`), calls the same broker
operation as the HTTP API (``DELETE /v1/tasks/{id}``, the dead-letter routes), then
sends the browser back to the page it came from with a message saying what happened.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING
from urllib.parse import quote, urlencode

from starlette.concurrency import run_in_threadpool

from crank.errors import BrokerError
from crank.runtime.console.tasks import no_task
from crank.runtime.console.web import CONSOLE_PREFIX

if TYPE_CHECKING:
    from starlette.responses import Response

    from crank.runtime.brokers.contract import DeadLetterChange
    from crank.runtime.console.web import ConsoleWeb, Visit

#: what a capability id a bulk form names may look like (as the manifest allows).
_CAPABILITY = re.compile(r"^[A-Za-z0-9._-]{1,200}$")
#: the checkbox a purge form must have ticked: deleting is for good.
CONFIRM_FIELD = "confirm"


def _task_page(task_id: str) -> str:
    return f"{CONSOLE_PREFIX}/tasks/{quote(task_id, safe='')}"


def _dead_letters_page(capability: str | None) -> str:
    query = urlencode({"capability": capability}) if capability else ""
    return f"{CONSOLE_PREFIX}/dead-letters" + (f"?{query}" if query else "")


def _back(visit: Visit, task_id: str) -> str:
    """Where a per-task form goes back to: the task's page, or the dead-letter list."""
    if visit.form.get("back") == "dead-letters":
        capability = visit.form.get("capability", "")
        return _dead_letters_page(capability if _CAPABILITY.match(capability) else None)
    return _task_page(task_id)


def _broker_down(web: ConsoleWeb, visit: Visit, exc: BrokerError) -> Response:
    # BrokerError only: anything else is a bug, answered 500 with its traceback logged
    # (the app's handler), never "broker unreachable"
    return web.broker_unreachable(
        visit, exc, outcome="Nothing was changed (or it is unknown whether it was):"
    )


def _unconfirmed(web: ConsoleWeb, visit: Visit) -> Response:
    return web.refuse(
        visit,
        400,
        "Not confirmed",
        "Purging deletes dead letters for good; the form's confirmation box was not ticked, "
        "so nothing was deleted.",
        "tick the box next to the Purge button, then send it again",
    )


async def cancel_task(web: ConsoleWeb, visit: Visit) -> Response:
    """Cancel the task: a waiting one never runs, a running one is told to stop."""
    task_id = visit.request.path_params["task_id"]
    try:
        cancellation = await run_in_threadpool(web.s.broker.cancel, task_id)
    except BrokerError as exc:
        return _broker_down(web, visit, exc)
    if cancellation is None:
        return no_task(web, visit, task_id)
    if cancellation.outcome == "finished":
        message = f"Task {task_id} had ended ({cancellation.task.status}): nothing to cancel."
    elif cancellation.outcome == "cancelled":
        message = f"Task {task_id} is cancelled: it had not started and will never run."
    else:
        message = (
            f"Task {task_id} is running: its worker was told to stop (ctx.cancelled). It ends "
            "cancelled when its handler stops, at its deadline at the latest."
        )
    web.log.info("console_task_cancel", task_id=task_id, outcome=cancellation.outcome)
    return web.redirect(visit, _task_page(task_id), flash=message)


async def redrive(web: ConsoleWeb, visit: Visit) -> Response:
    """Put one dead letter back on its queue."""
    task_id = visit.request.path_params["task_id"]
    try:
        change = await run_in_threadpool(web.s.broker.redrive, task_id)
    except BrokerError as exc:
        return _broker_down(web, visit, exc)
    return _one_done(web, visit, task_id, change, "redriven")


async def purge(web: ConsoleWeb, visit: Visit) -> Response:
    """Delete one dead letter for good (the form's box must be ticked)."""
    task_id = visit.request.path_params["task_id"]
    if visit.form.get(CONFIRM_FIELD) != "yes":
        return _unconfirmed(web, visit)
    try:
        change = await run_in_threadpool(web.s.broker.purge_dead_letter, task_id)
    except BrokerError as exc:
        return _broker_down(web, visit, exc)
    return _one_done(web, visit, task_id, change, "purged")


def _one_done(
    web: ConsoleWeb, visit: Visit, task_id: str, change: DeadLetterChange | None, outcome: str
) -> Response:
    if change is None:
        return no_task(web, visit, task_id)
    back = _back(visit, task_id)
    if not change.changed:
        message = f"Task {task_id} is not a dead letter (it is {change.task.status}): nothing done."
    elif outcome == "redriven":
        message = f"Task {task_id} is back on the queue: it runs again."
    else:
        message = f"Dead letter {task_id} is deleted for good."
        if back == _task_page(task_id):  # that page is gone with it
            back = _dead_letters_page(change.task.capability)
    web.log.info("console_dead_letter_" + outcome, task_id=task_id, changed=change.changed)
    return web.redirect(visit, back, flash=message)


async def redrive_all(web: ConsoleWeb, visit: Visit) -> Response:
    """Put every dead letter of the form's capability back on its queue."""
    return await _all(web, visit, "redriven")


async def purge_all(web: ConsoleWeb, visit: Visit) -> Response:
    """Delete every dead letter of the form's capability (the box must be ticked)."""
    if visit.form.get(CONFIRM_FIELD) != "yes":
        return _unconfirmed(web, visit)
    return await _all(web, visit, "purged")


async def _all(web: ConsoleWeb, visit: Visit, outcome: str) -> Response:
    capability = visit.form.get("capability", "")
    if not _CAPABILITY.match(capability):
        return web.refuse(
            visit,
            400,
            "No capability",
            "Acting on every dead letter at once needs one capability: none (or no valid id) "
            "was named, so nothing was done.",
            "choose a capability on the dead-letters page, then use its buttons",
        )
    broker = web.s.broker
    act = broker.redrive_dead_letters if outcome == "redriven" else broker.purge_dead_letters
    try:
        count = await run_in_threadpool(act, capability)
    except BrokerError as exc:
        return _broker_down(web, visit, exc)
    if outcome == "redriven":
        message = f"{count} dead letter(s) of {capability} are back on the queue."
    else:
        message = f"{count} dead letter(s) of {capability} are deleted for good."
    web.log.info("console_dead_letters_" + outcome, capability=capability, count=count)
    return web.redirect(visit, _dead_letters_page(capability), flash=message)


__all__ = ["CONFIRM_FIELD", "cancel_task", "purge", "purge_all", "redrive", "redrive_all"]
