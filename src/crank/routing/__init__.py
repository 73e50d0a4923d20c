"""Capability routing: the routing table, deprecation shims and the compat check.

The names below are loaded when first used: :mod:`crank.routing.queues` (the priority
bands the broker contract shares) is imported by every client of a broker, which must
not load the router, the manifest loader and PyYAML for it.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'crank.routing' has no attribute {name!r}")
    value = getattr(import_module("crank.routing.router"), name)
    globals()[name] = value
    return value
