"""crank's side of the queue benchmark: a no-op that counts itself (bench_counter)."""

from __future__ import annotations

from typing import Any

import bench_counter

from crank.worker import TaskContext, WorkerApplication, capability


class QueueBench(WorkerApplication):
    @capability("bench.noop")
    def noop(self, data: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        bench_counter.count()
        return {}
