"""Capability routing: the routing table, deprecation shims and the compat check."""

from __future__ import annotations

from crank.routing.router import (
    Resolution,
    Route,
    Router,
    deprecation_headers,
    load_router,
    split_capability_ref,
)

__all__ = [
    "Resolution",
    "Route",
    "Router",
    "deprecation_headers",
    "load_router",
    "split_capability_ref",
]
