"""``/openapi.json``: an OpenAPI 3.1 document written by walking the route table.

Every route declares its operation next to its handler
(:mod:`crank.runtime.http.routes`, vocabulary in :mod:`.operations`); the routes
whose paths the manifests decide (one per capability, one per legacy route)
declare how to document each. Capability input/output schemas are JSON Schema
2020-12, which OpenAPI 3.1 embeds as they are.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from crank.runtime.http.operations import COMPONENTS

if TYPE_CHECKING:
    from crank.routing import Router
    from crank.runtime.http.operations import RouteTable

OPENAPI_VERSION = "3.1.0"


def build_openapi(
    table: RouteTable,
    router: Router,
    *,
    title: str = "crank",
    version: str = "0.1.0",
    secured: bool = False,
) -> dict[str, Any]:
    """The document of every documented route of ``table`` for ``router``'s capabilities."""
    paths: dict[str, dict[str, Any]] = {}
    for endpoint in table:
        for path, operation in endpoint.documented(router):
            paths.setdefault(path, {})[endpoint.method.lower()] = operation.as_openapi(
                router, public=endpoint.public, secured=secured
            )
    doc: dict[str, Any] = {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": title,
            "version": version,
            "description": "Capabilities served by crank run.",
        },
        "paths": paths,
        "components": {"schemas": {name: dict(schema) for name, schema in COMPONENTS.items()}},
    }
    if secured:
        doc["components"]["securitySchemes"] = {"bearerAuth": {"type": "http", "scheme": "bearer"}}
        doc["security"] = [{"bearerAuth": []}]
    return doc


__all__ = ["OPENAPI_VERSION", "build_openapi"]
