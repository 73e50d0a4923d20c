"""``/openapi.json``: an OpenAPI 3.1 document built from the manifests' schemas.

Capability input/output schemas are JSON Schema 2020-12, which OpenAPI 3.1
embeds as they are; each capability gets its own synchronous path, and
``POST /v1/tasks`` takes a ``oneOf`` over every capability's envelope.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from crank.runtime.http.sse import MAX_EVENT_ID

if TYPE_CHECKING:
    from collections.abc import Mapping

    from crank.routing import Router

OPENAPI_VERSION = "3.1.0"


def _schema(raw: Mapping[str, Any]) -> dict[str, Any]:
    doc = copy.deepcopy(dict(raw))
    doc.pop("$schema", None)
    doc.pop("$id", None)
    return doc


def _error_ref() -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}


def _errors(*codes: int) -> dict[str, Any]:
    text = {
        400: "Invalid input (JSON paths in error.errors).",
        401: "Missing or wrong bearer token.",
        404: "Unknown capability or task.",
        409: "The task's capability does not stream events; read the task instead.",
        410: "Deprecated capability past its sunset; error.successors names the replacements.",
        413: "Request body too large.",
        422: "The task failed with a declared capability error.",
        429: "Overloaded; retry after the Retry-After header.",
        502: "The worker failed while running the task.",
        503: "Capability paused (budget) or broker unavailable.",
        504: "No result within the capability's timeout; poll the task.",
    }
    return {str(c): {"description": text[c], "content": _error_ref()} for c in codes}


_COMMON = (401, 413, 429, 503)

_TASK = {
    "type": "object",
    "required": ["id", "capability", "status"],
    "properties": {
        "id": {"type": "string"},
        "capability": {"type": "string"},
        "requested": {"type": ["string", "null"]},
        "status": {"enum": ["pending", "running", "retrying", "succeeded", "failed", "dead"]},
        "priority": {"type": "integer"},
        "attempts": {"type": "integer"},
        "max_attempts": {"type": "integer"},
        "created_at": {"type": "number"},
        "updated_at": {"type": "number"},
        "result": {},
        "error": {"type": ["object", "null"]},
    },
}

_EVENT_ID = {"type": "integer", "minimum": 0, "maximum": MAX_EVENT_ID}

_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "hint": {"type": "string"},
                "errors": {"type": "array", "items": {"type": "object"}},
                "successors": {"type": "array", "items": {"type": "string"}},
            },
        }
    },
}


def _sync_operation(
    summary: str,
    input_schema: Mapping[str, Any],
    output: Mapping[str, Any] | None,
    *,
    streaming: bool,
    deprecated: bool = False,
    operation_id: str,
) -> dict[str, Any]:
    ok: dict[str, Any] = {"description": "The capability's output."}
    if streaming:
        events = {
            "type": "object",
            "properties": {"events": {"type": "array", "items": output or {}}},
        }
        ok["content"] = {
            "application/json": {"schema": events},
            "text/event-stream": {"schema": {"type": "string"}},
        }
    else:
        ok["content"] = {"application/json": {"schema": dict(output) if output is not None else {}}}
    op: dict[str, Any] = {
        "operationId": operation_id,
        "summary": summary,
        "parameters": [
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "schema": {"type": "string", "maxLength": 200},
            }
        ],
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": dict(input_schema)}},
        },
        "responses": {"200": ok, **_errors(400, 404, 410, 422, 502, 504, *_COMMON)},
    }
    if deprecated:
        op["deprecated"] = True
    return op


def build_openapi(
    router: Router, *, title: str = "crank", version: str = "0.1.0", secured: bool = False
) -> dict[str, Any]:
    routes = router.routes()
    paths: dict[str, Any] = {}
    plain_json = {"application/json": {"schema": {"type": "object"}}}
    paths["/health"] = {
        "get": {
            "operationId": "health",
            "summary": "Liveness.",
            "responses": {"200": {"description": "Alive.", "content": plain_json}},
        }
    }
    paths["/ready"] = {
        "get": {
            "operationId": "ready",
            "summary": "Readiness: broker reachable and at least min workers up.",
            "responses": {
                "200": {"description": "Ready.", "content": plain_json},
                "503": {"description": "Not ready.", "content": plain_json},
            },
        }
    }
    paths["/metrics"] = {
        "get": {
            "operationId": "metrics",
            "summary": "Prometheus metrics.",
            "responses": {
                "200": {
                    "description": "Text exposition format.",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                }
            },
        }
    }
    paths["/v1/status"] = {
        "get": {
            "operationId": "status",
            "summary": "System health report.",
            "responses": {
                "200": {"description": "The report.", "content": plain_json},
                **_errors(401),
            },
        }
    }
    paths["/v1/capabilities"] = {
        "get": {
            "operationId": "listCapabilities",
            "summary": "Capabilities with their schemas.",
            "responses": {
                "200": {"description": "Live and deprecated capabilities.", "content": plain_json},
                **_errors(401),
            },
        }
    }
    envelopes = [
        {
            "type": "object",
            "required": ["capability", "input"],
            "properties": {
                "capability": {"const": r.capability_id},
                "input": _schema(r.capability.input),
                "priority": {"type": "integer", "minimum": -100, "maximum": 100},
            },
        }
        for r in routes
    ]
    paths["/v1/tasks"] = {
        "post": {
            "operationId": "submitTask",
            "summary": "Queue a task; answers 202 with its id and Location.",
            "parameters": [
                {
                    "name": "Idempotency-Key",
                    "in": "header",
                    "required": False,
                    "schema": {"type": "string", "maxLength": 200},
                }
            ],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {"oneOf": envelopes} if envelopes else {"type": "object"}
                    }
                },
            },
            "responses": {
                "202": {
                    "description": "Queued.",
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Task"}}
                    },
                },
                **_errors(400, 404, 410, *_COMMON),
            },
        }
    }
    paths["/v1/tasks/{task_id}"] = {
        "get": {
            "operationId": "getTask",
            "summary": "A task's status, result or error.",
            "parameters": [
                {"name": "task_id", "in": "path", "required": True, "schema": {"type": "string"}}
            ],
            "responses": {
                "200": {
                    "description": "The task.",
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Task"}}
                    },
                },
                **_errors(401, 404),
            },
        }
    }
    paths["/v1/tasks/{task_id}/events"] = {
        "get": {
            "operationId": "streamTaskEvents",
            "summary": "A streaming task's events as Server-Sent Events, live, resumable.",
            "description": (
                "Events numbered above Last-Event-ID (or ?after=; the header wins), each as "
                "`id: <n>` / `event: message` / `data: <json>`, then `event: end` or "
                "`event: error`. Always text/event-stream, whatever the Accept header."
            ),
            "parameters": [
                {"name": "task_id", "in": "path", "required": True, "schema": {"type": "string"}},
                {
                    "name": "Last-Event-ID",
                    "in": "header",
                    "required": False,
                    "description": "The id of the last event received; later ones are sent.",
                    "schema": _EVENT_ID,
                },
                {
                    "name": "after",
                    "in": "query",
                    "required": False,
                    "description": "Like Last-Event-ID, for clients that cannot set headers.",
                    "schema": _EVENT_ID,
                },
            ],
            "responses": {
                "200": {
                    "description": "The event stream.",
                    "content": {"text/event-stream": {"schema": {"type": "string"}}},
                },
                **_errors(400, 404, 409, *_COMMON),
            },
        }
    }
    for r in routes:
        cap = r.capability
        paths[f"/v1/capabilities/{r.capability_id}"] = {
            "post": _sync_operation(
                cap.description or f"Call {r.capability_id} and wait for the result.",
                _schema(cap.input),
                _schema(cap.output),
                streaming=cap.streaming,
                operation_id=f"call_{r.capability_id}",
            )
        }
    legacy = router.legacy_routes()
    for dep in router.deprecations():
        successors = [router.route(s) for s in dep.replaced_by]
        first = next((s for s in successors if s is not None), None)
        alias = len(dep.replaced_by) == 1 and first is not None
        input_schema = _schema(first.capability.input) if alias and first else {"type": "object"}
        output = _schema(first.capability.output) if alias and first else None
        streaming = bool(alias and first and first.capability.streaming)
        summary = f"Deprecated: use {', '.join(dep.replaced_by)} (sunset {dep.sunset.isoformat()})."
        paths[f"/v1/capabilities/{dep.id}"] = {
            "post": _sync_operation(
                summary,
                input_schema,
                output,
                streaming=streaming,
                deprecated=True,
                operation_id=f"call_{dep.id}",
            )
        }
        for path, dep_id in legacy.items():
            if dep_id == dep.id:
                paths[path] = {
                    "post": _sync_operation(
                        summary,
                        input_schema,
                        output,
                        streaming=streaming,
                        deprecated=True,
                        operation_id=f"legacy_{path.strip('/').replace('/', '_') or 'root'}",
                    )
                }
    doc: dict[str, Any] = {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": title,
            "version": version,
            "description": "Capabilities served by crank run.",
        },
        "paths": paths,
        "components": {"schemas": {"Task": _TASK, "Error": _ERROR}},
    }
    if secured:
        doc["components"]["securitySchemes"] = {"bearerAuth": {"type": "http", "scheme": "bearer"}}
        doc["security"] = [{"bearerAuth": []}]
        for public in ("/health", "/ready", "/metrics"):
            paths[public]["get"]["security"] = []
    return doc


__all__ = ["OPENAPI_VERSION", "build_openapi"]
