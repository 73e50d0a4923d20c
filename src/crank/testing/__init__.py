"""crank's pytest plugin and the testing helpers it exposes.

Importing this package is cheap: every helper is loaded on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from crank.testing.dependencies import DependencyResult, check_dependency
    from crank.testing.ensure import ensure_dependency, self_test_mode
    from crank.testing.gpu import GpuStrategy, select_gpu_strategy
    from crank.testing.streaming import (
        ConnectionResult,
        ManualClock,
        MockConnection,
        MockStreamingHarness,
        StreamConnection,
        StreamingCoordinator,
    )
    from crank.testing.workers import WorkerHandle, WorkerRunner

_EXPORTS = {
    "ConnectionResult": "crank.testing.streaming",
    "DependencyResult": "crank.testing.dependencies",
    "GpuStrategy": "crank.testing.gpu",
    "ManualClock": "crank.testing.streaming",
    "MockConnection": "crank.testing.streaming",
    "MockStreamingHarness": "crank.testing.streaming",
    "StreamConnection": "crank.testing.streaming",
    "StreamingCoordinator": "crank.testing.streaming",
    "WorkerHandle": "crank.testing.workers",
    "WorkerRunner": "crank.testing.workers",
    "check_dependency": "crank.testing.dependencies",
    "ensure_dependency": "crank.testing.ensure",
    "select_gpu_strategy": "crank.testing.gpu",
    "self_test_mode": "crank.testing.ensure",
}

__all__ = [
    "ConnectionResult",
    "DependencyResult",
    "GpuStrategy",
    "ManualClock",
    "MockConnection",
    "MockStreamingHarness",
    "StreamConnection",
    "StreamingCoordinator",
    "WorkerHandle",
    "WorkerRunner",
    "check_dependency",
    "ensure_dependency",
    "select_gpu_strategy",
    "self_test_mode",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'crank.testing' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
