"""Pieces every backend shares: ids, defaults, the error of a lost worker, and the
options every backend accepts (the contract itself is in :mod:`.contract`)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from crank.runtime.retry import RetryPolicy

DEFAULT_RESULT_TTL_S = 86_400.0


def new_id() -> str:
    return uuid.uuid4().hex


def worker_lost_error(attempts: int) -> dict[str, Any]:
    return {
        "code": "WORKER_LOST",
        "message": f"the task was delivered {attempts} times and its worker never finished it "
        "(the worker process died or hung each time)",
        "type": "WorkerLost",
    }


@dataclass(frozen=True)
class BrokerOptions:
    """Tunables every backend accepts (as keyword arguments or URL query parameters)."""

    retry_base_s: float = 0.5
    retry_max_s: float = 60.0
    result_ttl_s: float = DEFAULT_RESULT_TTL_S

    @property
    def retry(self) -> RetryPolicy:
        return RetryPolicy(base_s=self.retry_base_s, max_s=self.retry_max_s)
