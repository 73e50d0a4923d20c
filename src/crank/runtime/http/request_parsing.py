"""What a request carries, read and checked: its JSON body, its Idempotency-Key, where
an event stream resumes, how long a read of a task may wait for its end. Each problem
is a :class:`~crank.errors.ValidationFailed` naming where in the request it is (answered
400); a body that is not JSON by its Content-Type is :class:`UnsupportedMediaType` (415)."""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any, cast

from crank.errors import CrankError, ValidationFailed
from crank.manifest.findings import json_kind, json_path, lone_surrogate, strict_json
from crank.runtime.brokers.contract import (
    CALLER_PATTERN,
    IDEMPOTENCY_KEY_PATTERN,
    MAX_IDEMPOTENCY_KEY,
    MAX_PRIORITY,
    valid_idempotency_key,
    valid_priority,
)
from crank.runtime.http.limits import read_body
from crank.runtime.http.sse import MAX_EVENT_ID

if TYPE_CHECKING:
    from starlette.requests import Request

_EVENT_ID = re.compile(r"[0-9]{1,19}")
#: the longest ``GET /v1/tasks/{id}?wait=`` (seconds): under the idle timeout of common
#: proxies (60 s), so a long-poll is answered before anything between gives up on it.
MAX_TASK_WAIT_S = 55
#: a JSON number, as written by every client (no "inf", "nan", "1_0" or spaces).
_JSON_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
#: the escape of a UTF-16 surrogate: a body without one cannot hold a lone surrogate.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


class UnsupportedMediaType(CrankError):
    """The request body is declared as something other than JSON (HTTP 415)."""


def is_json_media_type(content_type: str) -> bool:
    """``application/json`` or a ``+json`` type, parameters (``charset``) aside."""
    media = content_type.partition(";")[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


async def json_body(request: Request, limit: int) -> Any:
    """The body as JSON: 415 unless its Content-Type is JSON (a missing one is taken for
    JSON) and it is not compressed (``Content-Encoding``), 413 over ``limit``, 400 when
    empty, not strict JSON, or holding a string that is not Unicode (a lone surrogate)."""
    content_type = request.headers.get("content-type")
    if content_type is not None and not is_json_media_type(content_type):
        raise UnsupportedMediaType(
            f"the request body must be JSON, not {content_type[:80]!r}",
            hint="send the body as JSON with Content-Type: application/json",
        )
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("identity", ""):  # its bytes would be read as broken UTF-8
        raise UnsupportedMediaType(
            f"the request body is compressed (Content-Encoding: {encoding[:40]}), which "
            "the server does not read",
            hint="send the JSON body uncompressed, without a Content-Encoding header",
        )
    return parse_json(await read_body(request, limit))


def parse_json(raw: bytes, what: str = "the request body") -> Any:
    """A JSON document as the API reads one (a request body; the console's input, which
    its messages call ``what``): ValidationFailed when empty, not strict JSON, nested
    too deeply, or holding a string that is not Unicode (a lone surrogate)."""
    if not raw.strip():
        raise ValidationFailed(
            f"{what} is empty",
            hint="send a JSON object",
            errors=[{"path": "$", "message": "a JSON body is required"}],
        )
    try:
        body = strict_json(raw)
        lone = lone_surrogate(body) if _SURROGATE_ESCAPE.search(raw) else None
    except RecursionError:
        raise ValidationFailed(
            f"{what} nests too deeply",
            hint="send a flatter JSON document",
            errors=[{"path": "$", "message": "nested too deeply"}],
        ) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValidationFailed(
            f"{what} is not JSON: {str(exc)[:200]}",
            hint="send a JSON object"
            + (" with Content-Type: application/json" if what == "the request body" else ""),
            errors=[{"path": "$", "message": "not valid JSON"}],
        ) from None
    if lone is not None:
        where, surrogate = lone
        raise ValidationFailed(
            f"{what} holds a lone UTF-16 surrogate ({surrogate!r}) at {where}: "
            "it is not a Unicode character",
            hint="send text as UTF-8; a character beyond U+FFFF escaped takes both halves "
            "of its surrogate pair (\\ud83d\\ude00)",
            errors=[{"path": where, "message": "a lone UTF-16 surrogate"}],
        )
    return body


#: The fields of ``POST /v1/tasks``; anything else is refused (a typo is not ignored).
ENVELOPE_FIELDS = ("capability", "input", "priority")


def task_envelope(body: Any) -> tuple[str, dict[str, Any], int]:
    """``(capability, input, priority)`` of a ``POST /v1/tasks`` body, every problem at its
    JSON path."""
    if not isinstance(body, dict):
        raise ValidationFailed(
            "the body must be a JSON object {capability, input, priority?}",
            hint="send {capability, input, priority?}",
            errors=[{"path": "$", "message": f"{json_kind(body)}, not an object"}],
        )
    problems = []
    ref = body.get("capability")
    if not isinstance(ref, str) or not ref:
        problems.append({"path": "$.capability", "message": "a capability id (string) is required"})
    payload = body.get("input")
    if not isinstance(payload, dict):
        what = "is required" if "input" not in body else "must be a JSON object"
        problems.append({"path": "$.input", "message": f"the capability's input {what}"})
    priority = body.get("priority", 0)
    if isinstance(priority, float) and priority.is_integer():
        priority = int(priority)  # 38.0 is an integer to JSON Schema, as to every JSON client
    if not valid_priority(priority):
        problems.append(
            {"path": "$.priority", "message": f"an integer from -{MAX_PRIORITY} to {MAX_PRIORITY}"}
        )
    problems += [
        {"path": json_path((field[:60],)), "message": "not a field of the task envelope"}
        for field in body
        if field not in ENVELOPE_FIELDS
    ]
    if problems:
        raise ValidationFailed(
            f"invalid task envelope: {problems[0]['path']}: {problems[0]['message']}",
            hint="send {capability, input, priority?}",
            errors=problems,
        )
    return str(ref), cast("dict[str, Any]", payload), int(priority)


def idempotency_key(request: Request) -> str | None:
    """The ``Idempotency-Key`` header: 1..200 visible ASCII characters, else 400."""
    key = _at_most_one(
        request.headers.getlist("idempotency-key"), "Idempotency-Key", "header:Idempotency-Key"
    )
    if key is None:
        return None
    if not valid_idempotency_key(key):
        raise ValidationFailed(
            f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} visible ASCII characters "
            f"without spaces (got {len(key)} characters)",
            hint="use a UUID per logical request",
            errors=[
                {
                    "path": "header:Idempotency-Key",
                    "message": f"not 1 to {MAX_IDEMPOTENCY_KEY} characters from '!' to '~'",
                }
            ],
        )
    return key


_CALLER = re.compile(CALLER_PATTERN)


def caller(request: Request) -> str | None:
    """The ``X-Crank-Caller`` name, None when not sent; 400 when it is not a valid name
    (silently ignoring it would file the caller's idempotency keys as anonymous)."""
    name = _at_most_one(
        request.headers.getlist("x-crank-caller"), "X-Crank-Caller", "header:X-Crank-Caller"
    )
    if name is None:
        return None
    if not _CALLER.fullmatch(name):
        raise ValidationFailed(
            f"X-Crank-Caller must be 1 to 64 letters, digits or . _ @ - (got {len(name)} "
            "characters)",
            hint="name the calling application, e.g. X-Crank-Caller: billing-app",
            errors=[
                {"path": "header:X-Crank-Caller", "message": f"does not match {CALLER_PATTERN}"}
            ],
        )
    return name


def only_parameters(request: Request, *names: str) -> None:
    """A 400 for a query parameter the route does not take: a typo (``?wiat=5``) must
    not be silently ignored."""
    if not request.scope.get("query_string"):
        return  # the usual request: nothing to parse
    for name in request.query_params:
        if name not in names:
            message = "not a parameter of this route"
            raise ValidationFailed(
                f"query parameter {name[:40]}: {message}",
                hint=f"use {', '.join(f'?{n}=' for n in names)}"
                if names
                else "this route takes no query parameter; leave it out (GET /openapi.json "
                "lists what each route takes)",
                errors=[{"path": f"query:{name[:40]}", "message": message}],
            )


def resume_after(request: Request) -> int:
    """The number of the last event the client has: ``Last-Event-ID``, else ``?after=``, else 0.

    Both are checked when both are sent (the header wins), so a bad ``after`` is never
    silently ignored.
    """
    found: int | None = None
    header = _at_most_one(
        request.headers.getlist("last-event-id"), "Last-Event-ID", "header:Last-Event-ID"
    )
    if header is not None:
        found = _event_id(header, "Last-Event-ID", "header:Last-Event-ID")
    query = _at_most_one(request.query_params.getlist("after"), "?after=", "query:after")
    if query is not None:
        after = _event_id(query, "after", "query:after")
        found = after if found is None else found
    return 0 if found is None else found


def _at_most_one(values: list[str], name: str, path: str) -> str | None:
    """The one value of a header or query parameter (None: not sent); a 400 when it is
    sent twice: which one is meant would be a guess (two idempotency keys, two callers)."""
    if len(values) > 1:
        raise ValidationFailed(
            f"{name} is given more than once",
            hint=f"send {name} once",
            errors=[{"path": path, "message": "given more than once"}],
        )
    return values[0] if values else None


def task_wait(request: Request) -> float:
    """``?wait=`` of ``GET /v1/tasks/{id}``: seconds to wait for the task to end, from 0
    (the default: answer at once) to :data:`MAX_TASK_WAIT_S`; anything else is a 400."""
    return _wait_query(request, MAX_TASK_WAIT_S, 0.0) or 0.0


def stream_wait(request: Request) -> float | None:
    """``?wait=`` of ``GET /v1/tasks/{id}/events``: the most seconds the stream waits for
    the task to end (None: the capability's ``timeout_s``); anything else is a 400."""
    return _wait_query(request, None, None)


def _wait_query(request: Request, most: float | None, default: float | None) -> float | None:
    values = request.query_params.getlist("wait")
    if not values:
        return default
    span = f"0 to {most}" if most is not None else "0 or more"
    hint = f"send the seconds to wait for the task to end, e.g. ?wait=20 ({span})"
    if len(values) > 1:
        raise ValidationFailed(
            "?wait= is given more than once",
            hint=hint,
            errors=[{"path": "query:wait", "message": "given more than once"}],
        )
    raw = values[0]
    seconds = float(raw) if _JSON_NUMBER.fullmatch(raw) else None
    if seconds is None or not (0 <= seconds <= (math.inf if most is None else most)):
        raise ValidationFailed(
            f"?wait= must be a number of seconds, {span}, not {raw[:40]!r}",
            hint=hint,
            errors=[{"path": "query:wait", "message": f"not a number of seconds, {span}"}],
        )
    return seconds


def _event_id(raw: str, name: str, where: str) -> int:
    if _EVENT_ID.fullmatch(raw) and int(raw) <= MAX_EVENT_ID:
        return int(raw)
    raise ValidationFailed(
        f"{name} must be the number of the last event received (an integer from 0 to "
        f"{MAX_EVENT_ID}), not {raw[:40]!r}",
        hint="send the `id` of the last event the client received (Last-Event-ID: 3 or ?after=3), "
        "or leave it out to start from the first event",
        errors=[{"path": where, "message": f"not an integer from 0 to {MAX_EVENT_ID}"}],
    )


__all__ = [
    "CALLER_PATTERN",
    "IDEMPOTENCY_KEY_PATTERN",
    "MAX_IDEMPOTENCY_KEY",
    "MAX_PRIORITY",
    "MAX_TASK_WAIT_S",
    "UnsupportedMediaType",
    "caller",
    "idempotency_key",
    "is_json_media_type",
    "json_body",
    "resume_after",
    "task_envelope",
    "task_wait",
]
