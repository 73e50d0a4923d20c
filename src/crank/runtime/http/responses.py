"""JSON answers: :class:`JSONResponse`, and error bodies: ``{"error": {"code",
"message", "hint", ...}}``."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from starlette import responses

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


__all__ = ["JSONResponse", "error_response"]
