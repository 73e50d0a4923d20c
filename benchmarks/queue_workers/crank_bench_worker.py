"""crank's side of the queue benchmark: a no-op that counts itself in Redis."""

from __future__ import annotations

import os
from typing import Any

import redis

from crank.worker import TaskContext, WorkerApplication, capability


class QueueBench(WorkerApplication):
    def setup(self) -> None:
        self.counter = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"])

    def teardown(self) -> None:
        self.counter.close()

    @capability("bench.noop")
    def noop(self, data: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        self.counter.incr("bench:done")
        return {}
