"""What a request carries, read and checked: its JSON body, its Idempotency-Key, where
an event stream resumes. Each problem is a :class:`~crank.errors.ValidationFailed`
naming where in the request it is (answered 400)."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from crank.errors import ValidationFailed
from crank.runtime.http.limits import read_body
from crank.runtime.http.sse import MAX_EVENT_ID

if TYPE_CHECKING:
    from starlette.requests import Request

MAX_IDEMPOTENCY_KEY = 200
#: visible ASCII, no spaces: what survives every HTTP client and proxy unchanged.
IDEMPOTENCY_KEY_PATTERN = "^[!-~]+$"
_IDEMPOTENCY_KEY = re.compile(IDEMPOTENCY_KEY_PATTERN)
_EVENT_ID = re.compile(r"[0-9]{1,19}")


async def json_body(request: Request, limit: int) -> Any:
    raw = await read_body(request, limit)
    if not raw.strip():
        raise ValidationFailed(
            "the request body is empty",
            hint="send a JSON object",
            errors=[{"path": "$", "message": "a JSON body is required"}],
        )
    try:
        return json.loads(raw)
    except RecursionError:
        raise ValidationFailed(
            "the request body nests too deeply",
            hint="send a flatter JSON document",
            errors=[{"path": "$", "message": "nested too deeply"}],
        ) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValidationFailed(
            f"the request body is not JSON: {exc}",
            hint="send a JSON object with Content-Type: application/json",
            errors=[{"path": "$", "message": "not valid JSON"}],
        ) from None


def idempotency_key(request: Request) -> str | None:
    """The ``Idempotency-Key`` header: 1..200 visible ASCII characters, else 400."""
    key = request.headers.get("idempotency-key")
    if key is None:
        return None
    if not 1 <= len(key) <= MAX_IDEMPOTENCY_KEY or not _IDEMPOTENCY_KEY.match(key):
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


def resume_after(request: Request) -> int:
    """The number of the last event the client has: ``Last-Event-ID``, else ``?after=``, else 0."""
    header = request.headers.get("last-event-id")
    if header is not None:
        raw, name, where = header, "Last-Event-ID", "header:Last-Event-ID"
    else:
        query = request.query_params.get("after")
        if query is None:
            return 0
        raw, name, where = query, "after", "query:after"
    if _EVENT_ID.fullmatch(raw) and int(raw) <= MAX_EVENT_ID:
        return int(raw)
    raise ValidationFailed(
        f"{name} must be the number of the last event received (an integer >= 0), not {raw[:40]!r}",
        hint="send the `id` of the last event the client received (Last-Event-ID: 3 or ?after=3), "
        "or leave it out to start from the first event",
        errors=[{"path": where, "message": f"not an integer from 0 to {MAX_EVENT_ID}"}],
    )


__all__ = [
    "IDEMPOTENCY_KEY_PATTERN",
    "MAX_IDEMPOTENCY_KEY",
    "idempotency_key",
    "json_body",
    "resume_after",
]
