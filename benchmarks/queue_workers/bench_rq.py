"""RQ's side of the queue benchmark (run with SimpleWorker: no fork per job)."""

from __future__ import annotations

from typing import Any

import bench_counter


def noop() -> dict[str, Any]:
    bench_counter.count()
    return {}
