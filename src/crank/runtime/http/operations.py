"""How an HTTP route describes itself, next to its handler: the route table's vocabulary.

Each handler of :class:`~crank.runtime.http.routes.Handlers` is registered on a
:class:`RouteTable` with its method, path and OpenAPI :class:`Operation`
(summary, parameters, request body, responses with their status codes, error
schema and headers). The table is the one source the app mounts
(:func:`~crank.runtime.http.app.create_app`), the request metrics label by,
the bearer token exempts (``public``) and ``/openapi.json`` is written from
(:func:`~crank.runtime.http.openapi.build_openapi`), as Starlette's
``schemas.py`` reads its document from the routes. Adding a response to a route
is one more :class:`Reply` (or status code in :func:`errors`) in its declaration.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from crank.runtime.brokers.contract import TASK_STATUSES

if TYPE_CHECKING:
    from crank.routing import Router

F = TypeVar("F", bound=Callable[..., Any])

#: A JSON Schema, as OpenAPI 3.1 embeds it.
Schema = Mapping[str, Any]

# -- schemas shared by several operations ------------------------------------------------

TASK_SCHEMA: Schema = {
    "type": "object",
    "required": ["id", "capability", "status"],
    "properties": {
        "id": {"type": "string"},
        "capability": {"type": "string"},
        "requested": {"type": ["string", "null"]},
        "status": {"enum": list(TASK_STATUSES)},
        "priority": {"type": "integer"},
        "attempts": {"type": "integer"},
        "max_attempts": {"type": "integer"},
        "created_at": {"type": "number"},
        "updated_at": {"type": "number"},
        "result": {},
        "error": {"type": ["object", "null"]},
        "caller": {
            "type": ["string", "null"],
            "description": "The X-Crank-Caller the task was submitted with.",
        },
        "input": {
            "type": "object",
            "description": "The task's input (GET /v1/tasks/{id} only).",
        },
        "cancel_requested_at": {
            "type": ["number", "null"],
            "description": "When someone asked to cancel the task (DELETE /v1/tasks/{id}).",
        },
    },
}

#: A task in a list: what it is and how it stands, without its input or result.
TASK_SUMMARY_SCHEMA: Schema = {
    "type": "object",
    "required": ["id", "capability", "status", "created_at", "updated_at"],
    "properties": {
        **{
            name: TASK_SCHEMA["properties"][name]
            for name in (
                "id",
                "capability",
                "requested",
                "status",
                "priority",
                "attempts",
                "max_attempts",
                "created_at",
                "updated_at",
                "error",
                "caller",
            )
        },
    },
}

#: One page of a list of tasks.
TASK_PAGE_SCHEMA: Schema = {
    "type": "object",
    "required": ["tasks", "next_cursor"],
    "properties": {
        "tasks": {"type": "array", "items": {"$ref": "#/components/schemas/TaskSummary"}},
        "next_cursor": {
            "type": ["string", "null"],
            "description": "The cursor of the next page; null when no task is left.",
        },
    },
}

ERROR_SCHEMA: Schema = {
    "type": "object",
    "required": ["error"],
    "additionalProperties": False,
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string", "pattern": "^[A-Z][A-Z0-9_]*$"},
                "message": {"type": "string"},
                "hint": {"type": "string"},
                "errors": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["path", "message"],
                        "properties": {"path": {"type": "string"}, "message": {"type": "string"}},
                    },
                },
                "successors": {"type": "array", "items": {"type": "string"}},
                "id": {"type": "string", "description": "The task, when there is one."},
                "task_error": {"type": "object", "description": "The task's error as stored."},
                "task_status": {
                    "type": "string",
                    "description": "How a task that had ended ended (409 TASK_FINISHED; "
                    "a synchronous call's 422 or 502).",
                },
                "attempts": {
                    "type": "integer",
                    "description": "How many times the task ran (a synchronous call's 422 or 502).",
                },
            },
        }
    },
}

#: The document's ``components.schemas``; operations refer to them with :func:`component_ref`.
COMPONENTS: Mapping[str, Schema] = {
    "Task": TASK_SCHEMA,
    "TaskSummary": TASK_SUMMARY_SCHEMA,
    "TaskPage": TASK_PAGE_SCHEMA,
    "Error": ERROR_SCHEMA,
}


def component_ref(component: str) -> Schema:
    """A ``$ref`` to one of :data:`COMPONENTS`."""
    if component not in COMPONENTS:
        raise KeyError(f"no component schema {component!r} (known: {', '.join(COMPONENTS)})")
    return {"$ref": f"#/components/schemas/{component}"}


JSON_OBJECT: Schema = {"type": "object"}

# -- the parts of an operation ---------------------------------------------------------------


@dataclass(frozen=True)
class Param:
    """A path, query or header parameter."""

    name: str
    where: Literal["path", "query", "header"]
    schema: Schema
    required: bool = False
    description: str | None = None

    def as_openapi(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"name": self.name, "in": self.where, "required": self.required}
        if self.description is not None:
            doc["description"] = self.description
        doc["schema"] = dict(self.schema)
        return doc


@dataclass(frozen=True)
class Header:
    """A response header: its schema, and whether every answer of that status carries it."""

    schema: Schema
    description: str
    required: bool = False

    def as_openapi(self) -> dict[str, Any]:
        return {
            "description": self.description,
            "required": self.required,
            "schema": dict(self.schema),
        }


@dataclass(frozen=True)
class Reply:
    """One documented response: status code, description, body per media type, headers."""

    status: int
    description: str
    #: media type -> schema of the body.
    content: Mapping[str, Schema] = field(default_factory=dict)
    #: response header -> what it holds (``Location``, ``Retry-After``...).
    headers: Mapping[str, Header] = field(default_factory=dict)

    def as_openapi(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"description": self.description}
        if self.headers:
            doc["headers"] = {name: h.as_openapi() for name, h in self.headers.items()}
        if self.content:
            doc["content"] = {media: {"schema": dict(s)} for media, s in self.content.items()}
        return doc

    def with_headers(self, headers: Mapping[str, Header]) -> Reply:
        return Reply(self.status, self.description, self.content, {**self.headers, **headers})


_SECONDS = {"type": "string", "pattern": "^[0-9]+$"}
RETRY_AFTER = Header(_SECONDS, "Seconds to wait before trying again.", required=True)
TASK_ID = Header({"type": "string"}, "The task that answered.", required=True)
LOCATION = Header({"type": "string", "pattern": "^/v1/tasks/"}, "The task.", required=True)

#: Headers of an answer through a deprecated id (RFC 9745, RFC 8594, RFC 8288).
DEPRECATION_HEADERS: Mapping[str, Header] = {
    "Deprecation": Header({"type": "string", "pattern": "^@[0-9]+$"}, "Deprecated since.", True),
    "Sunset": Header({"type": "string"}, "The last moment the id answers (HTTP date).", True),
    "Link": Header({"type": "string"}, 'The successors (rel="successor-version").', True),
}

#: The refusals of a call that carry its deprecated id's headers (as its success does):
#: those a handler answers once it knows the id (the guard's 401, 413 and 429, answered
#: before, do not; nor a 404, 410 or 500, which say the call cannot be served at all).
ANNOUNCED_REFUSALS = frozenset({400, 409, 413, 415, 429, 503})

# the codes of a 429, as its meanings name them
_OVERLOADED = "OVERLOADED: the server serves its most requests at once (CRANK_MAX_INFLIGHT)"
_QUEUE_FULL = "QUEUE_FULL: CRANK_MAX_PENDING tasks are pending"
_RETRY = "Retry after the Retry-After header."

#: What each error status means, unless the route says better (see :func:`errors`).
ERROR_MEANINGS: Mapping[int, str] = {
    400: "Invalid input (JSON paths in error.errors).",
    401: "Missing or wrong bearer token.",
    404: "Unknown capability or task.",
    409: "Conflict with the state of the resource.",
    410: "Deprecated capability past its sunset; error.successors names the replacements.",
    413: "Request body too large.",
    415: "The request body is not declared as JSON (Content-Type), or is compressed "
    "(Content-Encoding).",
    422: "The task failed for its input: the worker refused it or raised a declared error.",
    429: f"{_OVERLOADED}. {_RETRY}",
    502: "The worker failed while running the task (a crash or an undeclared error).",
    503: (
        "Unavailable: CAPABILITY_PAUSED (budget), WORKER_UNAVAILABLE (its worker failed to "
        "load or is not ready) or BROKER_UNAVAILABLE (the broker did not answer)."
    ),
    504: "No result within the capability's timeout; the task goes on (Location).",
}

#: The headers every answer of an error status carries (or may carry).
ERROR_HEADERS: Mapping[int, Mapping[str, Header]] = {
    401: {
        "WWW-Authenticate": Header({"type": "string"}, "The bearer scheme.", required=True),
    },
    429: {"Retry-After": RETRY_AFTER},
    503: {
        "Retry-After": Header(
            _SECONDS,
            "When to try again: a paused capability after midnight UTC; a worker that is "
            "not ready yet, or the broker, in a second (none for a worker that failed).",
        )
    },
    410: {
        "Sunset": Header(
            {"type": "string"}, "When the id retired: the last second of its sunset day.", True
        ),
        "Link": DEPRECATION_HEADERS["Link"],
    },
    504: {"Location": LOCATION, "X-Crank-Task-Id": TASK_ID},
}

#: 500 of a route that answers a stored task or its result (a list: a task's error).
TASK_NOT_JSON = (
    500,
    "TASK_NOT_JSON: the stored task (its result, input or error) holds a NaN or an "
    "infinity, which JSON cannot write; error.errors gives its path. Only a producer that "
    "does not check its values stores one; no retry helps.",
)

#: 500 of a route that changes a task and answers it as it stands after.
DONE_BUT_NOT_JSON = (
    500,
    "TASK_NOT_JSON: done, but the task as it stands holds a NaN or an infinity (in its "
    "error), which JSON cannot write; error.errors gives its path. Do not send the request "
    "again.",
)

#: 503 of a route that only reads or changes tasks in the broker: it calls no capability,
#: so none is paused or without its worker there, and the broker's 503 always says when.
BROKER_DOWN = (
    503,
    f"BROKER_UNAVAILABLE: the broker did not answer (or failed). {_RETRY}",
    {"Retry-After": Header(_SECONDS, "When to try again: in a second.", required=True)},
)

#: 429 of a route that queues a task: the in-flight bound, or the pending bound.
SUBMIT_LIMITS = (429, f"{_OVERLOADED}; or {_QUEUE_FULL}. {_RETRY}")
#: 429 of a synchronous call: those of :data:`SUBMIT_LIMITS`, or the capability's limit.
CALL_LIMITS = (
    429,
    f"{_OVERLOADED}; {_QUEUE_FULL}; or CONCURRENCY_LIMIT: the capability is at its "
    f"max_concurrency (error.max_concurrency). {_RETRY}",
)

#: 409 of the routes that take an Idempotency-Key.
KEY_REUSED = (
    409,
    "IDEMPOTENCY_KEY_REUSED: this caller used the Idempotency-Key before with another "
    "capability or input.",
)

#: 400 of a route that takes no query parameter: one sent is refused, not ignored (a
#: ``?priority=`` on a submit, a filter on a bulk purge, must not silently do less or more).
NO_PARAMETERS = (400, "A query parameter: this route takes none (error.errors names it).")

#: Errors every guarded route can answer (token, declared body size, overload).
GUARD_ERRORS = (401, 413, 429)
#: Errors of a route that reads a JSON body.
BODY_ERRORS = (400, 413, 415)


def errors(
    *statuses: int | tuple[int, str] | tuple[int, str, Mapping[str, Header]],
) -> tuple[Reply, ...]:
    """Error replies (the :data:`ERROR_SCHEMA` body and :data:`ERROR_HEADERS`) for
    ``statuses``, each once, in order; a ``(status, meaning)`` pair says what it means
    on this route, a ``(status, meaning, headers)`` triple which headers it comes with
    there too (in place of those of :data:`ERROR_HEADERS` of the same name)."""
    content = {"application/json": component_ref("Error")}
    replies: dict[int, Reply] = {}
    for status in statuses:
        code, meaning = status[:2] if isinstance(status, tuple) else (status, None)
        headers = status[2] if isinstance(status, tuple) and len(status) == 3 else {}
        if code in replies and meaning is None:
            continue
        if meaning is None:
            if code not in ERROR_MEANINGS:
                raise KeyError(
                    f"no meaning written for error status {code}; add it to ERROR_MEANINGS"
                )
            meaning = ERROR_MEANINGS[code]
        replies[code] = Reply(code, meaning, content, {**ERROR_HEADERS.get(code, {}), **headers})
    return tuple(sorted(replies.values(), key=lambda r: r.status))


@dataclass(frozen=True)
class Operation:
    """What ``/openapi.json`` says about one method of one path."""

    operation_id: str
    summary: str
    responses: tuple[Reply, ...]
    description: str | None = None
    parameters: tuple[Param, ...] = ()
    #: the JSON body's schema; a function of the router when the manifests decide it.
    request_body: Schema | Callable[[Router], Schema] | None = None
    #: named example bodies (a capability's manifest examples): name -> body.
    request_examples: Mapping[str, Any] = field(default_factory=dict)
    deprecated: bool = False

    def as_openapi(self, router: Router, *, public: bool, secured: bool) -> dict[str, Any]:
        doc: dict[str, Any] = {"operationId": self.operation_id, "summary": self.summary}
        if self.description is not None:
            doc["description"] = self.description
        if self.parameters:
            doc["parameters"] = [p.as_openapi() for p in self.parameters]
        if self.request_body is not None:
            body = self.request_body(router) if callable(self.request_body) else self.request_body
            media: dict[str, Any] = {"schema": dict(body)}
            if self.request_examples:
                media["examples"] = {n: {"value": v} for n, v in self.request_examples.items()}
            doc["requestBody"] = {"required": True, "content": {"application/json": media}}
        doc["responses"] = {str(r.status): r.as_openapi() for r in self.responses}
        if self.deprecated:
            doc["deprecated"] = True
        if public and secured:
            doc["security"] = []  # probes and scrapers need no token
        return doc


# -- the route table -----------------------------------------------------------------------

#: The paths and operations a route stands for when the manifests decide them (one per
#: capability, one per legacy route): ``(path, operation)`` pairs.
Documents = Callable[["Router"], Iterable[tuple[str, Operation]]]


@dataclass(frozen=True)
class Endpoint:
    """One route: where it is mounted, which handler answers, how it is documented."""

    method: str
    path: str
    #: the name of the :class:`~crank.runtime.http.routes.Handlers` method answering it.
    handler: str
    #: the operation documented at ``path``; None when ``documents`` (or nothing) says it.
    operation: Operation | None = None
    #: the operations of a path template that the manifests fill in.
    documents: Documents | None = None
    #: mounted at these paths (from the manifests) instead of ``path``.
    mounts: Callable[[Router], Iterable[str]] | None = None
    #: answered without the bearer token and outside the in-flight bound.
    public: bool = False

    def mounted_paths(self, router: Router) -> list[str]:
        return list(self.mounts(router)) if self.mounts is not None else [self.path]

    def documented(self, router: Router) -> Iterator[tuple[str, Operation]]:
        if self.operation is not None:
            yield self.path, self.operation
        if self.documents is not None:
            yield from self.documents(router)


class RouteTable:
    """The routes in the order they are declared (and matched, and documented)."""

    def __init__(self) -> None:
        self._endpoints: list[Endpoint] = []

    def route(
        self,
        method: str,
        path: str,
        operation: Operation | None = None,
        *,
        documents: Documents | None = None,
        mounts: Callable[[Router], Iterable[str]] | None = None,
        public: bool = False,
    ) -> Callable[[F], F]:
        """Register the decorated handler method for ``method`` ``path``."""

        def register(handler: F) -> F:
            self._endpoints.append(
                Endpoint(method, path, handler.__name__, operation, documents, mounts, public)
            )
            return handler

        return register

    def __iter__(self) -> Iterator[Endpoint]:
        return iter(self._endpoints)

    def public_paths(self) -> frozenset[str]:
        return frozenset(e.path for e in self._endpoints if e.public)

    def fixed_paths(self, router: Router) -> frozenset[str]:
        """Every mounted path without a parameter: each is its own metrics label."""
        return frozenset(
            path for e in self._endpoints for path in e.mounted_paths(router) if "{" not in path
        )


__all__ = [
    "ANNOUNCED_REFUSALS",
    "BODY_ERRORS",
    "BROKER_DOWN",
    "CALL_LIMITS",
    "COMPONENTS",
    "DEPRECATION_HEADERS",
    "DONE_BUT_NOT_JSON",
    "ERROR_HEADERS",
    "ERROR_MEANINGS",
    "ERROR_SCHEMA",
    "GUARD_ERRORS",
    "JSON_OBJECT",
    "KEY_REUSED",
    "LOCATION",
    "NO_PARAMETERS",
    "RETRY_AFTER",
    "SUBMIT_LIMITS",
    "TASK_ID",
    "TASK_NOT_JSON",
    "TASK_PAGE_SCHEMA",
    "TASK_SCHEMA",
    "TASK_SUMMARY_SCHEMA",
    "Endpoint",
    "Header",
    "Operation",
    "Param",
    "Reply",
    "RouteTable",
    "component_ref",
    "errors",
]
