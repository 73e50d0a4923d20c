"""The operations the manifests decide: one synchronous call per capability (live or
deprecated), one per legacy route, the task envelope of every capability, and the
events a streaming task sends.

The routes of :mod:`crank.runtime.http.routes` that stand for a path template
(``/v1/capabilities/{capability_id}``, the legacy routes) or take a body per
capability (``POST /v1/tasks``) point here from their declarations.

A deprecated id is documented with the input its shim really takes: the input of
its one successor (an alias), or, for a split, one branch per value of the
selector field (that successor's input plus ``select_by: <value>``) and one for
calls without it (the default successor's input). Its output is any of its
successors' outputs.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from crank.runtime.http.operations import (
    ANNOUNCED_REFUSALS,
    BODY_ERRORS,
    CALL_LIMITS,
    DEPRECATION_HEADERS,
    GUARD_ERRORS,
    JSON_OBJECT,
    KEY_REUSED,
    TASK_ID,
    TASK_NOT_JSON,
    Operation,
    Param,
    Reply,
    errors,
)
from crank.runtime.http.request_parsing import (
    CALLER_PATTERN,
    IDEMPOTENCY_KEY_PATTERN,
    MAX_IDEMPOTENCY_KEY,
    MAX_PRIORITY,
)

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

    from crank.manifest import Deprecation
    from crank.routing import Router
    from crank.runtime.http.operations import Header

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
CALLER = Param(
    "X-Crank-Caller",
    "header",
    {"type": "string", "pattern": CALLER_PATTERN},
    description="Names the caller: in deprecation counters, and as the scope of its "
    "idempotency keys (without it: the anonymous caller).",
)


def capability_schema(raw: Mapping[str, Any]) -> dict[str, Any]:
    """A manifest's JSON Schema as OpenAPI embeds it (without ``$schema``/``$id``)."""
    doc = copy.deepcopy(dict(raw))
    doc.pop("$schema", None)
    doc.pop("$id", None)
    return doc


# -- Server-Sent Events ------------------------------------------------------------------


def _json_data(schema: Mapping[str, Any]) -> dict[str, Any]:
    """An SSE ``data`` field holding one JSON document of ``schema``."""
    return {"type": "string", "contentMediaType": "application/json", "contentSchema": schema}


_SSE_END = {
    "type": "object",
    "required": ["id", "events"],
    "properties": {"id": {"type": "string"}, "events": {"type": "integer", "minimum": 0}},
}
_SSE_ERROR = {
    "type": "object",
    "required": ["code", "message", "id"],
    "properties": {
        "code": {"type": "string"},
        "message": {"type": "string"},
        "hint": {"type": "string"},
        "id": {"type": "string"},
        "status": {"enum": ["failed", "dead", "cancelled"]},
        "attempts": {"type": "integer", "minimum": 0},
    },
}


#: 409 of a call: its key was used for another request, or its task was cancelled.
_KEY_REUSED_OR_CANCELLED = (
    409,
    f"{KEY_REUSED[1]} Or CANCELLED: the task was cancelled (DELETE /v1/tasks/{{id}}) before "
    "it finished; error.id names it.",
)


def event_stream(message: Mapping[str, Any]) -> dict[str, Any]:
    """``text/event-stream`` as a streaming call sends it; the schema (OpenAPI 3.1) is the
    one of each event: ``message`` events carrying ``message`` as JSON, then ``end`` or
    ``error``. An event without an ``id`` line keeps the last one (SSE)."""

    def kind(name: str, data: Mapping[str, Any], *, numbered: bool = False) -> dict[str, Any]:
        return {
            "type": "object",
            "required": ["event", "data", *(["id"] if numbered else [])],
            "properties": {
                "event": {"const": name},
                "id": {"type": "string", "pattern": "^[0-9]+$"},
                "data": _json_data(data),
            },
        }

    events = [kind("message", message, numbered=True), kind("end", _SSE_END)]
    return {"text/event-stream": {"oneOf": [*events, kind("error", _SSE_ERROR)]}}


def streamed_events(router: Router) -> dict[str, Any]:
    """The events of ``GET /v1/tasks/{id}/events``: those of every streaming capability."""
    outputs = _distinct(
        capability_schema(r.capability.output) for r in router.routes() if r.capability.streaming
    )
    return event_stream(_any_of(outputs))


# -- the task envelope -------------------------------------------------------------------


def task_envelopes(router: Router) -> dict[str, Any]:
    """The body of ``POST /v1/tasks``: one envelope per capability it takes, deprecated
    ones (until their sunset) included."""

    def envelope(capability_id: str, input_schema: Any, *, deprecated: bool) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "type": "object",
            "required": ["capability", "input"],
            "additionalProperties": False,
            "properties": {
                "capability": {"const": capability_id},
                "input": input_schema,
                "priority": {"type": "integer", "minimum": -MAX_PRIORITY, "maximum": MAX_PRIORITY},
            },
        }
        if deprecated:
            doc["deprecated"] = True
        return doc

    envelopes = [
        envelope(r.capability_id, capability_schema(r.capability.input), deprecated=False)
        for r in router.routes()
    ]
    envelopes += [
        envelope(dep.id, _shim(router, dep).input, deprecated=True)
        for dep in router.deprecations()
        if not router.is_gone(dep.id)
    ]
    return {"oneOf": envelopes} if envelopes else dict(JSON_OBJECT)


# -- synchronous calls -------------------------------------------------------------------


@dataclass(frozen=True)
class _Answers:
    """What a call answers: its input schema, its successful outputs, whether it streams."""

    input: Any
    #: (output schema, streams) of each capability the call may run.
    outputs: tuple[tuple[Any, bool], ...]


def call_operation(
    operation_id: str,
    summary: str,
    answers: _Answers,
    *,
    deprecated: bool = False,
    gone: bool = False,
    examples: Mapping[str, Any] | None = None,
) -> Operation:
    """A synchronous call: the input in, the output (or its events) out, every error."""
    request_errors = (*BODY_ERRORS, *GUARD_ERRORS)
    if gone:  # refused before anything is queued, whatever the input
        return Operation(
            operation_id=operation_id,
            summary=summary,
            parameters=(IDEMPOTENCY_KEY, CALLER),
            request_body=dict(JSON_OBJECT),
            responses=errors(*request_errors, 410),
            deprecated=True,
        )
    plain = [out for out, streams in answers.outputs if not streams]
    streamed = [out for out, streams in answers.outputs if streams]
    bodies = plain + [
        {"type": "object", "required": ["events"], "properties": {"events": {"items": out}}}
        for out in streamed
    ]
    content: dict[str, Any] = {"application/json": _any_of(_distinct(bodies))}
    if streamed:
        content.update(event_stream(_any_of(_distinct(streamed))))
    deprecation = DEPRECATION_HEADERS if deprecated else {}
    headers = {"X-Crank-Task-Id": TASK_ID, **deprecation}
    # a task was queued: it names itself (and its deprecation); 500: its stored result
    # holds what JSON cannot write
    ran = (422, 500, 502, 504)

    def refusal_headers(status: int) -> Mapping[str, Header]:
        if status in ran:
            return headers
        if status == 409:  # a CANCELLED task names itself too; a reused key queued nothing
            return {"X-Crank-Task-Id": replace(TASK_ID, required=False), **deprecation}
        if status not in ANNOUNCED_REFUSALS:
            return {}
        if status in GUARD_ERRORS:  # not when the guard refused it before the route
            return {name: replace(h, required=False) for name, h in deprecation.items()}
        return deprecation

    replies = [
        r.with_headers(refusal_headers(r.status))
        for r in errors(
            *request_errors,
            CALL_LIMITS,
            _KEY_REUSED_OR_CANCELLED,
            422,
            TASK_NOT_JSON,
            502,
            504,
            503,
            *((410,) if deprecated else ()),
        )
    ]
    return Operation(
        operation_id=operation_id,
        summary=summary,
        parameters=(IDEMPOTENCY_KEY, CALLER),
        request_body=answers.input,
        request_examples=dict(examples or {}),
        responses=(
            Reply(200, "The capability's output (or its events).", content, headers),
            *sorted(replies, key=lambda r: r.status),
        ),
        deprecated=deprecated,
    )


def capability_calls(router: Router) -> Iterator[tuple[str, Operation]]:
    """``POST /v1/capabilities/{id}`` of every live and every deprecated capability."""
    for r in router.routes():
        cap = r.capability
        answers = _Answers(
            capability_schema(cap.input), ((capability_schema(cap.output), cap.streaming),)
        )
        summary = cap.description or f"Call {r.capability_id} and wait for the result."
        # the manifest's examples: schemathesis's examples phase sends each of them
        examples = {
            example.name or f"example {i}": dict(example.input)
            for i, example in enumerate(cap.examples, start=1)
        }
        yield (
            f"/v1/capabilities/{r.capability_id}",
            call_operation(f"call_{r.capability_id}", summary, answers, examples=examples),
        )
    for dep in router.deprecations():
        yield f"/v1/capabilities/{dep.id}", _deprecated_call(router, dep, f"call_{dep.id}")


def legacy_calls(router: Router) -> Iterator[tuple[str, Operation]]:
    """Each legacy route, documented as the deprecated capability it calls."""
    for path, dep_id in router.legacy_routes().items():
        dep = router.deprecated(dep_id)
        if dep is not None:
            operation_id = f"legacy_{path.strip('/').replace('/', '_') or 'root'}"
            yield path, _deprecated_call(router, dep, operation_id)


def _deprecated_call(router: Router, dep: Deprecation, operation_id: str) -> Operation:
    summary = f"Deprecated: use {', '.join(dep.replaced_by)} (sunset {dep.sunset.isoformat()})."
    return call_operation(
        operation_id, summary, _shim(router, dep), deprecated=True, gone=router.is_gone(dep.id)
    )


# -- what a deprecated id's shim takes and gives ---------------------------------------------


def _shim(router: Router, dep: Deprecation, seen: tuple[str, ...] = ()) -> _Answers:
    """The input a call of ``dep`` must send for its shim to reach a successor, and the
    outputs of the successors it may reach."""
    if dep.id in seen:  # a loop; the router refuses such manifests, the document need not
        return _Answers(dict(JSON_OBJECT), (({}, False),))
    seen = (*seen, dep.id)
    shim = dep.shim
    if shim is None:
        if len(dep.replaced_by) == 1:
            return _target(router, dep.replaced_by[0], seen)
        return _Answers(dict(JSON_OBJECT), (({}, False),))  # answers 400: no shim to choose
    branches: list[Any] = []
    outputs: list[tuple[Any, bool]] = []
    for value, target in shim.map.items():
        answers = _target(router, target, seen)
        branches.append(_with_selector(answers.input, shim.select_by, value, shim.keep_selector))
        outputs += answers.outputs
    if shim.default is not None and shim.default in shim.map:
        answers = _target(router, shim.map[shim.default], seen)
        branches.append(_without_selector(answers.input, shim.select_by))
    return _Answers({"anyOf": branches}, tuple(_distinct(outputs)))


def _target(router: Router, capability_id: str, seen: tuple[str, ...]) -> _Answers:
    route = router.route(capability_id)
    if route is not None:
        cap = route.capability
        return _Answers(
            capability_schema(cap.input), ((capability_schema(cap.output), cap.streaming),)
        )
    dep = router.deprecated(capability_id)
    if dep is not None:
        return _shim(router, dep, seen)
    return _Answers(dict(JSON_OBJECT), (({}, False),))


def _with_selector(schema: Any, field: str, value: str, keep: bool) -> dict[str, Any]:
    """``schema`` of a successor, for calls whose ``field`` is ``value``."""
    plain_object = isinstance(schema, dict) and schema.get("type") == "object"
    if keep or not plain_object:
        # the successor sees the field too (or its schema is not a plain object schema)
        return {"allOf": [schema, {"properties": {field: {"const": value}}, "required": [field]}]}
    # the shim takes the field out before the successor validates: allow it here
    branch: dict[str, Any] = copy.deepcopy(schema)
    branch["properties"] = {**branch.get("properties", {}), field: {"const": value}}
    branch["required"] = [*[r for r in branch.get("required", []) if r != field], field]
    return branch


def _without_selector(schema: Any, field: str) -> dict[str, Any]:
    """``schema`` of the default successor, for calls that leave ``field`` out."""
    absent = {"properties": {field: False}}  # a property whose schema is false may not appear
    if not (isinstance(schema, dict) and schema.get("type") == "object"):
        return {"allOf": [schema, absent]}
    branch: dict[str, Any] = copy.deepcopy(schema)
    branch["properties"] = {**branch.get("properties", {}), field: False}
    branch["required"] = [r for r in branch.get("required", []) if r != field]
    return branch


def _distinct(schemas: Any) -> list[Any]:
    out: list[Any] = []
    for schema in schemas:
        if schema not in out:
            out.append(schema)
    return out


def _any_of(schemas: list[Any]) -> Any:
    if not schemas:
        return {}
    return schemas[0] if len(schemas) == 1 else {"anyOf": schemas}


__all__ = [
    "CALLER",
    "IDEMPOTENCY_KEY",
    "call_operation",
    "capability_calls",
    "capability_schema",
    "event_stream",
    "legacy_calls",
    "streamed_events",
    "task_envelopes",
]
