"""The route table: one source for the mounted routes, /openapi.json and the guard's paths."""

from __future__ import annotations

from typing import Any

import pytest

from crank.runtime.http.app import create_app
from crank.runtime.http.openapi import build_openapi
from crank.runtime.http.operations import (
    Header,
    Operation,
    Param,
    Reply,
    component_ref,
    errors,
)
from crank.runtime.http.routes import ROUTES


def test_the_app_mounts_and_documents_the_same_routes(make_services: Any) -> None:
    services = make_services()
    router = services.router
    app = create_app(services)
    mounted = {(m, route.path) for route in app.routes for m in route.methods - {"HEAD"}}
    spec = build_openapi(ROUTES, router)
    documented = {(m.upper(), path) for path, ops in spec["paths"].items() for m in ops}
    # the console's HTML pages are for people, not part of the API the document describes
    console = {(m, p) for m, p in mounted if p == "/ui" or p.startswith("/ui/")}
    assert ("GET", "/ui") in console and not {p for _, p in console} & set(spec["paths"])
    mounted -= console
    # the document itself, and the template the manifests fill in, one path per capability
    assert mounted - documented == {
        ("GET", "/openapi.json"),
        ("POST", "/v1/capabilities/{capability_id}"),
    }
    capabilities = [r.capability_id for r in router.routes()]
    capabilities += [d.id for d in router.deprecations()]
    assert documented - mounted == {("POST", f"/v1/capabilities/{c}") for c in capabilities}
    assert {p for _, p in mounted} >= set(router.legacy_routes()) == {"/echo", "/retired"}


def test_public_routes_are_the_ones_without_a_token(make_services: Any) -> None:
    services = make_services(api_token="t0ken")
    spec = build_openapi(ROUTES, services.router, secured=True)
    public = {p for p, ops in spec["paths"].items() if ops.get("get", {}).get("security") == []}
    assert public == ROUTES.public_paths() == {"/health", "/ready", "/metrics"}
    assert "security" not in build_openapi(ROUTES, services.router)["paths"]["/health"]["get"]


def test_fixed_paths_label_the_request_metrics(make_services: Any) -> None:
    router = make_services().router
    assert ROUTES.fixed_paths(router) == {
        "/health", "/ready", "/metrics", "/openapi.json", "/v1/status", "/v1/capabilities",
        "/v1/tasks", "/v1/dead-letters", "/echo", "/retired",
    }  # fmt: skip


def test_an_operation_renders_its_parts_in_openapi_terms() -> None:
    operation = Operation(
        operation_id="op",
        summary="An operation.",
        parameters=(Param("id", "path", {"type": "string"}, required=True),),
        request_body={"type": "object"},
        responses=(
            Reply(202, "Queued.", {"application/json": component_ref("Task")},
                  headers={"Location": Header({"type": "string"}, "The task.", required=True)}),
            *errors(429),
        ),
    )  # fmt: skip
    doc = operation.as_openapi(None, public=True, secured=False)  # type: ignore[arg-type]
    assert doc["parameters"] == [
        {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
    ]
    assert doc["requestBody"]["content"]["application/json"]["schema"] == {"type": "object"}
    assert doc["responses"]["202"] == {
        "description": "Queued.",
        "headers": {
            "Location": {"description": "The task.", "required": True, "schema": {"type": "string"}}
        },
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Task"}}},
    }
    assert doc["responses"]["429"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Error"
    }
    # an error status brings the headers every such answer carries
    assert doc["responses"]["429"]["headers"]["Retry-After"]["required"] is True
    assert "security" not in doc


def test_an_error_status_without_a_meaning_is_refused() -> None:
    with pytest.raises(KeyError, match="no meaning written for error status 418"):
        errors(400, 418)
    with pytest.raises(KeyError, match="no component schema 'Nope'"):
        component_ref("Nope")
