"""Overload protection: bounded in-flight requests and bounded request bodies."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from crank.errors import CrankError

if TYPE_CHECKING:
    from starlette.requests import Request


class BodyTooLarge(CrankError):
    """The request body is over the configured limit (HTTP 413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"request body is larger than {limit} bytes",
            hint="send a smaller body, or raise CRANK_MAX_BODY_BYTES on the server",
        )
        self.limit = limit


class InflightLimiter:
    """At most ``limit`` requests served at once; the rest are refused, never queued.

    Refusing (429 + Retry-After) instead of queueing keeps memory bounded under a
    burst: a waiting request would hold its socket, body and coroutine.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._count = 0
        self._peak = 0
        self._lock = threading.Lock()

    def try_acquire(self) -> bool:
        with self._lock:
            if self._count >= self.limit:
                return False
            self._count += 1
            self._peak = max(self._peak, self._count)
            return True

    def release(self) -> None:
        with self._lock:
            self._count -= 1

    @property
    def inflight(self) -> int:
        return self._count

    @property
    def peak(self) -> int:
        return self._peak


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused as soon as it is known to exceed ``limit`` (declared or streamed)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(limit)
        chunks.append(chunk)
    return b"".join(chunks)


__all__ = ["BodyTooLarge", "InflightLimiter", "read_body"]
