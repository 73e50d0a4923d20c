"""The hot routes' short way through the app: no route table, no exception layers.

A synchronous call (``POST /v1/capabilities/{id}``), a submit (``POST /v1/tasks``) and
a task's state (``GET /v1/tasks/{id}``) walked Starlette's exception middleware, its
route table (a regular expression per route until one matched) and two more exception
wrappers before reaching their handlers, which answer every error themselves
(``error_for``). :class:`FastCalls` sits inside the guard and hands these three to
their handlers directly, as Starlette's own ``request_response`` does, with the same
``path_params``; every other request goes on to the route table. A bug that escapes a
handler still reaches Starlette's outermost layer, which answers 500 with the
documented error.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from starlette.responses import Response
    from starlette.types import ASGIApp, Receive, Scope, Send

    from crank.runtime.http.routes import Handlers

    Endpoint = Callable[[Request], Awaitable[Response]]

CAPABILITIES = "/v1/capabilities/"
TASKS = "/v1/tasks"
TASK = "/v1/tasks/"


def _segment(path: str, prefix: str) -> str | None:
    """The one path segment after ``prefix`` (a route's ``{name}``), else None."""
    if path.startswith(prefix) and len(path) > len(prefix) and "/" not in path[len(prefix) :]:
        return path[len(prefix) :]
    return None


class FastCalls:
    """ASGI middleware: the hot routes straight to their handlers (module docstring)."""

    def __init__(self, app: ASGIApp, *, handlers: Handlers) -> None:
        self.app = app
        self.handlers = handlers

    def _endpoint(self, scope: Scope) -> Endpoint | None:
        """The handler of a hot route, ``path_params`` set in ``scope``; else None."""
        if scope["type"] != "http":
            return None
        path: str = scope["path"]
        method: str = scope["method"]
        if method == "POST":
            if path == TASKS:
                scope["path_params"] = {}
                return self.handlers.submit_task
            if (capability := _segment(path, CAPABILITIES)) is not None:
                scope["path_params"] = {"capability_id": capability}
                return self.handlers.call_capability
        elif method == "GET" and (task := _segment(path, TASK)) is not None:
            scope["path_params"] = {"task_id": task}
            return self.handlers.get_task
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint = self._endpoint(scope)
        if endpoint is None:
            await self.app(scope, receive, send)
            return
        response = await endpoint(Request(scope, receive))
        await response(scope, receive, send)


__all__ = ["FastCalls"]
