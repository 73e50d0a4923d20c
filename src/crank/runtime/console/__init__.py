"""The operator console: server-rendered HTML at ``/ui``, served by ``crank run`` itself.

Pages read the broker, the router and the status tracker of the server they run
in; actions go through the same gateway and broker operations as the HTTP API.
No JavaScript, one stylesheet, templates in ``templates/`` (shipped in the wheel).
``CRANK_UI`` turns it ``on`` (default), ``readonly`` or ``off`` (no route at all).
See docs/console.md.
"""

from __future__ import annotations

import datetime as dt
from importlib import resources
from typing import TYPE_CHECKING

from starlette.responses import Response
from starlette.routing import Route

from crank.runtime.console import actions, login, pages, tasks
from crank.runtime.console.throughput import OutcomeWindow
from crank.runtime.console.web import CONSOLE_PREFIX, SECURITY_HEADERS, ConsoleWeb

if TYPE_CHECKING:
    from starlette.requests import Request

    from crank.runtime.console.web import Visit
    from crank.runtime.http.services import RuntimeServices

#: answered without a login: the form itself and the stylesheet it needs.
PUBLIC_PATHS = frozenset({f"{CONSOLE_PREFIX}/login", f"{CONSOLE_PREFIX}/static/console.css"})


def _stylesheet() -> bytes:
    return (resources.files("crank.runtime.console") / "static" / "console.css").read_bytes()


def console_routes(services: RuntimeServices) -> list[Route]:
    """Every route of the console (none when ``CRANK_UI=off``)."""
    if services.config.ui == "off":
        return []
    web = ConsoleWeb(services)
    window = OutcomeWindow(services.metrics.task_outcomes)
    started = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    css = _stylesheet()

    async def stylesheet(request: Request) -> Response:
        headers = {**SECURITY_HEADERS, "Cache-Control": "max-age=300"}
        return Response(css, media_type="text/css", headers=headers)

    async def login_form(request: Request) -> Response:
        return await login.login_form(web, request)

    async def overview(web: ConsoleWeb, visit: Visit) -> Response:
        return await pages.overview(web, visit, window)

    async def deprecated(web: ConsoleWeb, visit: Visit) -> Response:
        return await pages.deprecated(web, visit, started)

    ui = CONSOLE_PREFIX
    return [
        Route(f"{ui}/static/console.css", stylesheet, methods=["GET"]),
        Route(f"{ui}/login", login_form, methods=["GET"]),
        Route(f"{ui}/login", web.action(login.log_in, changes_tasks=False, needs_login=False),
              methods=["POST"]),
        Route(f"{ui}/logout", web.action(login.log_out, changes_tasks=False), methods=["POST"]),
        Route(ui, web.page(overview), methods=["GET"]),
        Route(f"{ui}/capabilities", web.page(pages.capabilities), methods=["GET"]),
        Route(f"{ui}/capabilities/{{capability_id}}", web.page(pages.capability),
              methods=["GET"]),
        Route(f"{ui}/capabilities/{{capability_id}}/call", web.action(pages.call_capability),
              methods=["POST"]),
        Route(f"{ui}/deprecated", web.page(deprecated), methods=["GET"]),
        Route(f"{ui}/tasks", web.page(tasks.task_search), methods=["GET"]),
        Route(f"{ui}/tasks/{{task_id}}", web.page(tasks.task_detail), methods=["GET"]),
        Route(f"{ui}/dead-letters", web.page(tasks.dead_letters), methods=["GET"]),
        Route(f"{ui}/tasks/{{task_id}}/cancel", web.action(actions.cancel_task),
              methods=["POST"]),
        Route(f"{ui}/dead-letters/redrive-all", web.action(actions.redrive_all),
              methods=["POST"]),
        Route(f"{ui}/dead-letters/purge-all", web.action(actions.purge_all), methods=["POST"]),
        Route(f"{ui}/dead-letters/{{task_id}}/redrive", web.action(actions.redrive),
              methods=["POST"]),
        Route(f"{ui}/dead-letters/{{task_id}}/purge", web.action(actions.purge),
              methods=["POST"]),
    ]  # fmt: skip


__all__ = ["CONSOLE_PREFIX", "PUBLIC_PATHS", "console_routes"]
