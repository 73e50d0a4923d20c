"""RQ's side of the queue benchmark (run with SimpleWorker: no fork per job)."""

from __future__ import annotations

import os
from typing import Any

import redis

counter = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"])


def noop() -> dict[str, Any]:
    counter.incr("bench:done")
    return {}
