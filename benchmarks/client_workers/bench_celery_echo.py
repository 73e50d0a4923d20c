"""Celery's side of the client benchmark: the same echo, Redis as broker and result backend."""

from __future__ import annotations

import os
from typing import Any

from celery import Celery

URL = os.environ["BENCH_REDIS_URL"]
app = Celery("bench_celery_echo", broker=URL, backend=URL)
app.conf.update(worker_hijack_root_logger=False, broker_connection_retry_on_startup=True)


@app.task(name="echo")
def echo(text: str) -> dict[str, Any]:
    return {"text": text}
