"""The console's task pages: a task's detail, and the dead letters.

Everything is read from the broker on each request (``crank run`` keeps no list of
its own), so what these pages show survives a restart of the server.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from crank.runtime.console.web import CONSOLE_PREFIX

if TYPE_CHECKING:
    from collections.abc import Mapping

    from starlette.responses import Response

    from crank.runtime.brokers.contract import TaskRecord
    from crank.runtime.console.web import ConsoleWeb, Visit

#: the most events of a streamed task the detail page lists.
MAX_EVENTS_SHOWN = 200
#: dead letters listed on one page.
DEAD_LETTERS_SHOWN = 100


@dataclass(frozen=True)
class TaskView:
    record: TaskRecord
    #: the id the caller asked for (a deprecated id routed to ``record.capability``).
    requested: str | None
    caller: str | None
    request_id: str | None
    trace_id: str | None
    #: the events of a streamed task (None: its capability does not stream).
    events: tuple[tuple[int, Mapping[str, Any]], ...] | None
    #: more events exist than are shown.
    more_events: bool


def _meta(record: TaskRecord, name: str) -> str | None:
    value = record.meta.get(name) if record.meta else None
    return value if isinstance(value, str) and value else None


async def task_view(web: ConsoleWeb, task_id: str) -> TaskView | None:
    io = web.s.gateway.io
    record = await io.get(task_id)
    if record is None:
        return None
    route = web.s.router.route(record.capability)
    events: tuple[tuple[int, Mapping[str, Any]], ...] | None = None
    more = False
    if route is not None and route.capability.streaming:
        found = await io.call(
            lambda: web.s.broker.read_events(task_id, 0, limit=MAX_EVENTS_SHOWN + 1)
        )
        events = tuple(found[:MAX_EVENTS_SHOWN])
        more = len(found) > MAX_EVENTS_SHOWN
    requested = _meta(record, "requested")
    return TaskView(
        record=record,
        requested=requested if requested != record.capability else None,
        caller=_meta(record, "caller"),
        request_id=_meta(record, "request_id"),
        trace_id=_meta(record, "trace_id"),
        events=events,
        more_events=more,
    )


def no_task(web: ConsoleWeb, visit: Visit, task_id: str) -> Response:
    return web.refuse(
        visit,
        404,
        "No such task",
        f"The broker has no task {task_id!r}.",
        "tasks are kept until their result expires; search the tasks page for recent ones",
    )


async def task_detail(web: ConsoleWeb, visit: Visit) -> Response:
    task_id = visit.request.path_params["task_id"]
    view = await task_view(web, task_id)
    if view is None:
        return no_task(web, visit, task_id)
    return web.render(
        visit, "task.html", title=f"Task {task_id}", active=f"{CONSOLE_PREFIX}/tasks", view=view
    )


async def dead_letters(web: ConsoleWeb, visit: Visit) -> Response:
    capability = visit.request.query_params.get("capability") or None
    letters = await web.s.gateway.io.call(lambda: web.s.broker.dead_letters(DEAD_LETTERS_SHOWN))
    if capability is not None:
        letters = [r for r in letters if r.capability == capability]
    return web.render(
        visit,
        "dead_letters.html",
        title="Dead letters",
        active=f"{CONSOLE_PREFIX}/dead-letters",
        letters=letters,
        capability=capability,
        capabilities=[r.capability_id for r in web.s.router.routes()],
        limit=DEAD_LETTERS_SHOWN,
    )


__all__ = ["MAX_EVENTS_SHOWN", "TaskView", "dead_letters", "no_task", "task_detail", "task_view"]
