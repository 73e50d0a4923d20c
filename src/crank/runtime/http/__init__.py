"""The HTTP API of ``crank run`` (Starlette on uvicorn)."""

from __future__ import annotations

from crank.runtime.http.app import RuntimeServices, create_app

__all__ = ["RuntimeServices", "create_app"]
