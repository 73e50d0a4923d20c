"""Assemble the Starlette application from the route table and the runtime's services."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Route

from crank.runtime.http.guard import GuardMiddleware
from crank.runtime.http.openapi import build_openapi
from crank.runtime.http.routes import ROUTES, Handlers

if TYPE_CHECKING:
    from crank.runtime.http.services import RuntimeServices


def create_app(services: RuntimeServices) -> Starlette:
    """Mount every route of :data:`~crank.runtime.http.routes.ROUTES` behind the guard."""
    router = services.router
    document = build_openapi(
        ROUTES, router, version=services.version, secured=services.config.api_token is not None
    )
    handlers = Handlers(services, openapi=document)
    routes = [
        Route(path, getattr(handlers, endpoint.handler), methods=[endpoint.method])
        for endpoint in ROUTES
        for path in endpoint.mounted_paths(router)
    ]
    middleware = [
        Middleware(
            GuardMiddleware,
            token=services.config.api_token,
            limiter=services.limiter,
            max_body_bytes=services.config.max_body_bytes,
            metrics=services.metrics,
            public_paths=ROUTES.public_paths(),
            known_paths=ROUTES.fixed_paths(router),
        )
    ]
    app = Starlette(routes=routes, middleware=middleware)
    app.state.services = services
    return app


__all__ = ["create_app"]
