"""Celery's side of the queue benchmark (defaults, Redis broker and result backend)."""

from __future__ import annotations

import os
from typing import Any

import bench_counter
from celery import Celery

URL = os.environ["BENCH_REDIS_URL"]
app = Celery("bench_celery", broker=URL, backend=URL)
app.conf.update(worker_hijack_root_logger=False, broker_connection_retry_on_startup=True)


@app.task(name="noop")
def noop() -> dict[str, Any]:
    bench_counter.count()
    return {}
