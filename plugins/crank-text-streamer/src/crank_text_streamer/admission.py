"""How many streams the worker serves at once, and the answer to one too many."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from crank.testing.streaming import ConnectionResult, StreamConnection

MAX_STREAMS_ENV = "CRANK_STREAM_MAX_CONNECTIONS"
DEFAULT_MAX_STREAMS = 32
RETRY_AFTER_S = 2.0


def max_streams_from_env() -> int:
    raw = os.environ.get(MAX_STREAMS_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_STREAMS
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        from crank.errors import UsageError

        raise UsageError(
            f"{MAX_STREAMS_ENV}={raw!r} is not a positive whole number",
            hint=f"set {MAX_STREAMS_ENV} to the number of streams one worker may serve at once",
            subject=MAX_STREAMS_ENV,
        )
    return value


class StreamAdmission:
    """Admits at most ``max_streams`` concurrent streams; the next one is told to back off.

    Implements crank's ``StreamingCoordinator`` interface, so the same object fronts a
    real SSE connection and a :class:`crank.testing.MockStreamingHarness` connection.
    """

    def __init__(self, max_streams: int, retry_after_s: float = RETRY_AFTER_S) -> None:
        self.max_streams = max_streams
        self.retry_after_s = retry_after_s
        self.open: set[str] = set()

    async def handle_new_connection(self, connection: StreamConnection) -> ConnectionResult:
        from crank.testing.streaming import ConnectionResult

        if len(self.open) >= self.max_streams:
            return ConnectionResult(
                "backpressure_applied",
                f"text-streamer: connection limit of {self.max_streams} streams reached; "
                f"retry after {self.retry_after_s:g} s",
                retry_after_s=self.retry_after_s,
            )
        self.open.add(connection.id)
        return ConnectionResult("accepted", f"stream {connection.id} accepted")

    async def handle_disconnect(self, connection: StreamConnection) -> None:
        self.open.discard(connection.id)
