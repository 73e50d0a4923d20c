"""JSON answers: :class:`JSONResponse`, error bodies (``{"error": {"code",
"message", "hint", ...}}``), and the answer for a stored task JSON cannot write."""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

from starlette import responses

from crank.manifest.findings import non_finite_number
from crank.runtime.logs import get_logger

if TYPE_CHECKING:
    from collections.abc import Mapping


class JSONResponse(responses.JSONResponse):
    """Starlette's, except that a string holding a lone UTF-16 surrogate (a worker's
    result may; a request body may not) goes out escaped (``"\\ud800"``, valid JSON)
    instead of failing the answer with a 500: Starlette encodes the text as UTF-8,
    which has no form for it."""

    def render(self, content: Any) -> bytes:
        text = json.dumps(
            content, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")
        )
        return text.encode("utf-8", "backslashreplace")


def error_response(
    status: int,
    code: str,
    message: str,
    *,
    hint: str | None = None,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body: dict[str, Any] = {"code": code, "message": message}
    if hint:
        body["hint"] = hint
    body.update(extra)
    return JSONResponse({"error": body}, status_code=status, headers=dict(headers or {}))


def not_json(
    task_id: str, value: Any, *, subject: str | None = None, done: str | None = None
) -> dict[str, Any]:
    """The error body (``{code, message, ...}``) for a stored task, or a part of it named
    by ``subject`` (``"event 3 of task t1"``), that holds a NaN or an infinity: JSON has no
    form for them, and only a producer that does not check its values (an older crank,
    another program writing to the broker) stores one. No retry helps. ``done``: what
    the request did to the task all the same (``"purged"``), which the message says."""
    path, number = non_finite_number(value) or ("$", math.nan)
    shown = "NaN" if math.isnan(number) else ("Infinity" if number > 0 else "-Infinity")
    get_logger("crank.runtime.http").error("task_not_json", task_id=task_id, path=path)
    subject = subject or f"task {task_id}"
    if done is not None:
        subject = f"{subject} was {done}, but it"
    kept = "do not send the request again" if done is not None else "the task is kept"
    return {
        "code": "TASK_NOT_JSON",
        "message": f"{subject} cannot be answered: {path} is {shown}, which JSON cannot write",
        "hint": "it was stored as it is by a producer that does not check its values (an "
        f"older crank, or another program writing to the broker); {kept}: fix that producer",
        "id": task_id,
        "errors": [{"path": path, "message": f"{shown} is not a JSON number"}],
    }


def json_or_not_json(
    body: Any,
    task_id: str,
    *,
    subject: str | None = None,
    done: str | None = None,
    status_code: int = 200,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """``body`` (a task, a result) as JSON; 500 ``TASK_NOT_JSON`` (see :func:`not_json`)
    when it holds a NaN or an infinity, with the same headers."""
    try:
        return JSONResponse(body, status_code=status_code, headers=dict(headers or {}))
    except ValueError:  # what json.dumps refuses in decoded JSON: a non-finite float
        error = not_json(task_id, body, subject=subject, done=done)
        return JSONResponse({"error": error}, status_code=500, headers=dict(headers or {}))


__all__ = ["JSONResponse", "error_response", "json_or_not_json", "not_json"]
