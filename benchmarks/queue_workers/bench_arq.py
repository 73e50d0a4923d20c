"""arq's side of the queue benchmark (poll_delay lowered from 0.5 s to 10 ms)."""

from __future__ import annotations

import os
from typing import Any, ClassVar

import bench_counter
from arq.connections import RedisSettings

SETTINGS = RedisSettings.from_dsn(os.environ["BENCH_REDIS_URL"])


async def noop(ctx: dict[str, Any]) -> dict[str, Any]:
    bench_counter.count()
    return {}


class WorkerSettings:
    functions: ClassVar[list[Any]] = [noop]
    redis_settings = SETTINGS
    poll_delay = 0.01
    max_jobs = 10
