"""The operations the manifests decide: one synchronous call per capability (live or
deprecated), one per legacy route, and the task envelope of every capability.

The routes of :mod:`crank.runtime.http.routes` that stand for a path template
(``/v1/capabilities/{capability_id}``, the legacy routes) or take a body per
capability (``POST /v1/tasks``) point here from their declarations.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from crank.runtime.http.operations import (
    GUARD_ERRORS,
    JSON_OBJECT,
    KEY_REUSED,
    Operation,
    Param,
    Reply,
    errors,
)
from crank.runtime.http.request_parsing import IDEMPOTENCY_KEY_PATTERN, MAX_IDEMPOTENCY_KEY

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping

    from crank.routing import Router

IDEMPOTENCY_KEY = Param(
    "Idempotency-Key",
    "header",
    {
        "type": "string",
        "minLength": 1,
        "maxLength": MAX_IDEMPOTENCY_KEY,
        "pattern": IDEMPOTENCY_KEY_PATTERN,
    },
    description="Makes retries safe: the same caller, capability and input with the same key "
    "get the first task back; another capability or input answers 409. Keys are scoped to "
    "the X-Crank-Caller.",
)
EVENT_STREAM = {"text/event-stream": {"type": "string"}}


def capability_schema(raw: Mapping[str, Any]) -> dict[str, Any]:
    """A manifest's JSON Schema as OpenAPI embeds it (without ``$schema``/``$id``)."""
    doc = copy.deepcopy(dict(raw))
    doc.pop("$schema", None)
    doc.pop("$id", None)
    return doc


def task_envelopes(router: Router) -> dict[str, Any]:
    """The body of ``POST /v1/tasks``: one envelope per capability served."""
    envelopes = [
        {
            "type": "object",
            "required": ["capability", "input"],
            "properties": {
                "capability": {"const": r.capability_id},
                "input": capability_schema(r.capability.input),
                "priority": {"type": "integer", "minimum": -100, "maximum": 100},
            },
        }
        for r in router.routes()
    ]
    return {"oneOf": envelopes} if envelopes else dict(JSON_OBJECT)


def call_operation(
    operation_id: str,
    summary: str,
    input_schema: Mapping[str, Any],
    output: Mapping[str, Any] | None,
    *,
    streaming: bool,
    deprecated: bool = False,
) -> Operation:
    """A synchronous capability call: the input in, the output (or its events) out."""
    if streaming:
        events = {
            "type": "object",
            "properties": {"events": {"type": "array", "items": output or {}}},
        }
        content: dict[str, Any] = {"application/json": events, **EVENT_STREAM}
    else:
        content = {"application/json": dict(output) if output is not None else {}}
    return Operation(
        operation_id=operation_id,
        summary=summary,
        parameters=(IDEMPOTENCY_KEY,),
        request_body=input_schema,
        responses=(
            Reply(200, "The capability's output.", content),
            *errors(400, 404, KEY_REUSED, 410, 422, 502, 504, *GUARD_ERRORS),
        ),
        deprecated=deprecated,
    )


def capability_calls(router: Router) -> Iterator[tuple[str, Operation]]:
    """``POST /v1/capabilities/{id}`` of every live and every deprecated capability."""
    for r in router.routes():
        cap = r.capability
        yield (
            f"/v1/capabilities/{r.capability_id}",
            call_operation(
                f"call_{r.capability_id}",
                cap.description or f"Call {r.capability_id} and wait for the result.",
                capability_schema(cap.input),
                capability_schema(cap.output),
                streaming=cap.streaming,
            ),
        )
    for dep_id, deprecated in _deprecated_calls(router):
        yield f"/v1/capabilities/{dep_id}", deprecated(f"call_{dep_id}")


def legacy_calls(router: Router) -> Iterator[tuple[str, Operation]]:
    """Each legacy route, documented as the deprecated capability it calls."""
    calls = dict(_deprecated_calls(router))
    for path, dep_id in router.legacy_routes().items():
        if dep_id in calls:
            yield path, calls[dep_id](f"legacy_{path.strip('/').replace('/', '_') or 'root'}")


def _deprecated_calls(router: Router) -> Iterator[tuple[str, Callable[[str], Operation]]]:
    """(deprecated id, its operation given an operation id): an alias of its one successor
    takes that successor's schemas; a split into several takes any object."""
    for dep in router.deprecations():
        successors = [router.route(s) for s in dep.replaced_by]
        first = next((s for s in successors if s is not None), None)
        alias = first if len(dep.replaced_by) == 1 else None
        summary = f"Deprecated: use {', '.join(dep.replaced_by)} (sunset {dep.sunset.isoformat()})."

        def operation(operation_id: str, alias: Any = alias, summary: str = summary) -> Operation:
            return call_operation(
                operation_id,
                summary,
                capability_schema(alias.capability.input) if alias else dict(JSON_OBJECT),
                capability_schema(alias.capability.output) if alias else None,
                streaming=bool(alias and alias.capability.streaming),
                deprecated=True,
            )

        yield dep.id, operation


__all__ = [
    "EVENT_STREAM",
    "IDEMPOTENCY_KEY",
    "call_operation",
    "capability_calls",
    "capability_schema",
    "legacy_calls",
    "task_envelopes",
]
