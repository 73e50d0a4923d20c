"""JSON error bodies: ``{"error": {"code", "message", "hint", ...}}``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.responses import JSONResponse

if TYPE_CHECKING:
    from collections.abc import Mapping


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


__all__ = ["error_response"]
