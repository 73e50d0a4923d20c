"""The console's task pages: a task's detail, and the dead letters.

Everything is read from the broker on each request (``crank run`` keeps no list of
its own), so what these pages show survives a restart of the server.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from starlette.concurrency import run_in_threadpool

from crank.runtime.brokers.contract import TASK_STATUSES, TaskQuery, cursor_is_valid
from crank.runtime.console.web import CONSOLE_PREFIX
from crank.runtime.http.request_parsing import CALLER_PATTERN

if TYPE_CHECKING:
    from collections.abc import Mapping

    from starlette.datastructures import QueryParams
    from starlette.responses import Response

    from crank.runtime.brokers.contract import TaskRecord
    from crank.runtime.console.web import ConsoleWeb, Visit

#: the most events of a streamed task the detail page lists.
MAX_EVENTS_SHOWN = 200
#: tasks listed on one page of the search.
TASKS_SHOWN = 50
_CALLER = re.compile(CALLER_PATTERN)
#: what a task id looks like: what the brokers hand out, and nothing a URL would mangle.
_TASK_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
#: the query parameters of the task search, each taken once.
SEARCH_PARAMETERS = ("status", "capability", "caller", "cursor", "id")


def repeated(params: QueryParams) -> list[str]:
    """A problem for each search parameter given more than once: the API answers 400 for
    it, and taking one of the values would list what was not asked for."""
    return [
        f"{name} is given {count} times (a search takes one {name})"
        for name in SEARCH_PARAMETERS
        if (count := len(params.getlist(name))) > 1
    ]


@dataclass(frozen=True)
class Search:
    """The task search's filters, as the form sent them, and what is wrong with them."""

    status: str | None
    capability: str | None
    caller: str | None
    cursor: str | None
    problems: tuple[str, ...]

    @classmethod
    def of(cls, params: QueryParams) -> Search:
        def given(name: str) -> str | None:
            value = params.get(name, "").strip()
            return value or None

        status, capability = given("status"), given("capability")
        caller, cursor = given("caller"), given("cursor")
        problems = repeated(params)
        if status is not None and status not in TASK_STATUSES:
            problems.append(f"status {status[:40]!r} is not one of {', '.join(TASK_STATUSES)}")
        if capability is not None and len(capability) > 200:
            problems.append("the capability is longer than 200 characters")
        if caller is not None and not _CALLER.match(caller):
            problems.append(
                f"caller {caller[:40]!r} is not a caller name (letters, digits, . _ @ -)"
            )
        if cursor is not None and not cursor_is_valid(cursor):
            problems.append("the page link is damaged: start again from the newest tasks")
        return cls(status, capability, caller, cursor, tuple(problems))

    def query(self) -> TaskQuery:
        return TaskQuery(
            status=self.status,  # type: ignore[arg-type]  # checked in of()
            capability=self.capability,
            caller=self.caller,
            limit=TASKS_SHOWN,
            cursor=self.cursor,
        )

    def link(self, cursor: str | None = None, *, base: str = "tasks") -> str:
        """The search page (or the dead letters: ``base``) with these filters and a cursor."""
        fields = {"capability": self.capability, "caller": self.caller, "cursor": cursor}
        if base == "tasks":
            fields["status"] = self.status
        query = urlencode({k: v for k, v in fields.items() if v})
        return f"{CONSOLE_PREFIX}/{base}" + (f"?{query}" if query else "")


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


def capability_choices(web: ConsoleWeb, search: Search) -> list[str]:
    """The capabilities a filter form offers: every one served here, and the one the
    search names when no worker serves it any more (its tasks and dead letters stay in
    the broker): the form then shows the filter that was applied, not "any"."""
    served = [r.capability_id for r in web.s.router.routes()]
    if search.capability is not None and search.capability not in served:
        served.append(search.capability)
    return served


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


async def task_search(web: ConsoleWeb, visit: Visit) -> Response:
    """Tasks from the broker, newest first, filtered, one page at a time; ``?id=`` opens
    one task."""
    params = visit.request.query_params
    wanted = params.get("id", "").strip()
    if wanted and len(params.getlist("id")) == 1:
        if not _TASK_ID.match(wanted):
            return no_task(web, visit, wanted[:128])
        return web.redirect(visit, f"{CONSOLE_PREFIX}/tasks/{quote(wanted, safe='')}")
    search = Search.of(params)
    page = None
    if not search.problems:
        page = await run_in_threadpool(web.s.broker.list_tasks, search.query())
    return web.render(
        visit,
        "tasks.html",
        status=400 if search.problems else 200,
        title="Tasks",
        active=f"{CONSOLE_PREFIX}/tasks",
        search=search,
        page=page,
        statuses=TASK_STATUSES,
        capabilities=capability_choices(web, search),
        next_link=search.link(page.next_cursor) if page and page.next_cursor else None,
        first_link=search.link() if search.cursor else None,
    )


async def dead_letters(web: ConsoleWeb, visit: Visit) -> Response:
    """The dead letters, newest first, from the broker; filtered by capability."""
    found = Search.of(visit.request.query_params)
    search = Search("dead", found.capability, None, found.cursor, found.problems)
    page = None
    if not search.problems:
        page = await run_in_threadpool(web.s.broker.list_tasks, search.query())
    return web.render(
        visit,
        "dead_letters.html",
        status=400 if search.problems else 200,
        title="Dead letters",
        active=f"{CONSOLE_PREFIX}/dead-letters",
        search=search,
        page=page,
        capabilities=capability_choices(web, search),
        next_link=search.link(page.next_cursor, base="dead-letters")
        if page and page.next_cursor
        else None,
        first_link=search.link(base="dead-letters") if search.cursor else None,
    )


__all__ = [
    "MAX_EVENTS_SHOWN",
    "SEARCH_PARAMETERS",
    "Search",
    "TaskView",
    "capability_choices",
    "dead_letters",
    "no_task",
    "repeated",
    "task_detail",
    "task_search",
    "task_view",
]
