"""Assemble the Starlette application from the route table and the runtime's services."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.responses import RedirectResponse
from starlette.routing import BaseRoute, Match, Route

from crank.runtime.console import CONSOLE_PREFIX, console_routes
from crank.runtime.http.fast_calls import FastCalls
from crank.runtime.http.guard import GuardMiddleware, route_templates
from crank.runtime.http.openapi import build_openapi
from crank.runtime.http.responses import error_response
from crank.runtime.http.routes import ROUTES, Handlers
from crank.runtime.logs import get_logger

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

    from crank.runtime.http.services import RuntimeServices

#: Starlette's own answers (no route, wrong method...) by status: (code, hint).
_HTTP_ERRORS = {
    404: ("NOT_FOUND", "GET /openapi.json lists every route"),
    405: ("METHOD_NOT_ALLOWED", "the Allow header lists the methods this path answers"),
}


def allowed_methods(request: Request) -> str:
    """Every method some route answers at the request's path (Starlette's own 405 names
    only those of the first route whose path matched, and several routes share a path)."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        if isinstance(route, Route) and route.path_regex.match(request.url.path):
            methods |= route.methods or set()
    return ", ".join(sorted(methods))


def slash_twin(request: Request) -> str | None:
    """The request's path with its trailing slash taken off, or one added, when a route
    answers that path and the request's method; else None."""
    path = request.scope["path"]
    twin = path.rstrip("/") if path.endswith("/") else f"{path}/"
    if not twin or twin.startswith("//"):  # "//host" in a Location is another site
        return None
    scope = {**request.scope, "path": twin}
    for route in request.app.router.routes:
        if route.matches(scope)[0] is Match.FULL:
            return twin
    return None


async def http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own 404 and 405 (and any HTTPException) as the documented JSON error.

    A path that a route answers with its trailing slash taken off (or one added) is
    redirected there (307: same method and body), with the path alone in ``Location``:
    Starlette's own redirect wrote the request's ``Host`` header into it, so a client
    that sent another name was sent to that site."""
    status: int = getattr(exc, "status_code", 500)
    if status == 404 and (twin := slash_twin(request)) is not None:
        query = request.scope.get("query_string", b"").decode("latin-1")
        return RedirectResponse(f"{twin}?{query}" if query else twin, status_code=307)
    code, hint = _HTTP_ERRORS.get(status, ("HTTP_ERROR", "see GET /openapi.json"))
    what = {
        404: f"no route {request.url.path}",
        405: f"{request.method} is not allowed on {request.url.path}",
    }.get(status, str(getattr(exc, "detail", "")))
    headers = dict(getattr(exc, "headers", None) or {})
    if status == 405:
        headers["Allow"] = allowed_methods(request)
    return error_response(status, code, what, hint=hint, headers=headers)


async def internal_error(request: Request, exc: Exception) -> Response:
    """A bug that escaped a handler: the documented JSON error, the details in the log.

    ``Connection: close``: Starlette raises the error again once this answer is sent,
    and the server then closes the connection; a client told nothing would send its
    next request on it and have it reset."""
    get_logger("crank.runtime.http").error("unhandled_error", exc_info=exc)
    return error_response(
        500,
        "INTERNAL",
        f"the server failed while answering: {type(exc).__name__}",
        hint="this is a bug in crank or a plugin; the server log has the traceback",
        headers={"Connection": "close"},
    )


def create_app(services: RuntimeServices) -> Starlette:
    """Mount every route of :data:`~crank.runtime.http.routes.ROUTES` behind the guard."""
    router = services.router
    document = build_openapi(
        ROUTES, router, version=services.version, secured=services.config.api_token is not None
    )
    handlers = Handlers(services, openapi=document)
    routes: list[BaseRoute] = [
        Route(path, getattr(handlers, endpoint.handler), methods=[endpoint.method])
        for endpoint in ROUTES
        for path in endpoint.mounted_paths(router)
    ]
    console = console_routes(services)  # the operator console at /ui, unless CRANK_UI=off
    routes += console
    middleware = [
        Middleware(
            GuardMiddleware,
            token=services.config.api_token,
            limiter=services.limiter,
            max_body_bytes=services.config.max_body_bytes,
            metrics=services.metrics,
            public_paths=ROUTES.public_paths(),
            known_paths=ROUTES.fixed_paths(router),
            console_prefix=CONSOLE_PREFIX if console else None,
            templates=route_templates(e.path for e in ROUTES),
            access_log=services.config.access_log,
        ),
        # the hot routes skip the route table (fast_calls.py); the rest go on to it
        Middleware(FastCalls, handlers=handlers),
    ]
    app = Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={HTTPException: http_error, Exception: internal_error},
    )
    app.router.redirect_slashes = False  # http_error redirects, without the Host header
    app.state.services = services
    return app


__all__ = ["create_app"]
