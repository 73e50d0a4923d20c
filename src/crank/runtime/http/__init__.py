"""The HTTP API of ``crank run`` (Starlette on uvicorn)."""

from __future__ import annotations

from crank.runtime.http.app import create_app
from crank.runtime.http.services import RuntimeServices, build_services

__all__ = ["RuntimeServices", "build_services", "create_app"]
