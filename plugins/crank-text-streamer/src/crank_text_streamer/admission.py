"""How many streams may run at once, and the answer to one too many, for the harness tests.

Under ``crank run`` the runtime enforces ``text.tokens``' ``max_concurrency`` (from
crank.yaml, or ``CRANK_MAX_CONCURRENCY`` at deploy time) across every worker
process and answers the stream past it with 429 and Retry-After. ``StreamAdmission``
applies the manifest's limit in the same way to a
:class:`crank.testing.MockStreamingHarness`, so the worker's streaming behaviour can
be tested without sockets.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from crank.manifest import Manifest
    from crank.testing.streaming import ConnectionResult, StreamConnection

CAPABILITY = "text.tokens"
#: what the runtime answers in Retry-After too (seconds).
RETRY_AFTER_S = 1.0


def max_streams(manifest: Manifest) -> int | None:
    """``text.tokens``' ``max_concurrency`` as the manifest declares it (None: no limit)."""
    return next(c.max_concurrency for c in manifest.capabilities if c.id == CAPABILITY)


class StreamAdmission:
    """Admits at most ``max_streams`` concurrent streams; the next one is told to back off.

    Implements crank's ``StreamingCoordinator`` interface for a
    :class:`crank.testing.MockStreamingHarness` connection.
    """

    def __init__(self, max_streams: int | None, retry_after_s: float = RETRY_AFTER_S) -> None:
        self.max_streams = max_streams
        self.retry_after_s = retry_after_s
        self.open: set[str] = set()

    async def handle_new_connection(self, connection: StreamConnection) -> ConnectionResult:
        from crank.testing.streaming import ConnectionResult

        if self.max_streams is not None and len(self.open) >= self.max_streams:
            return ConnectionResult(
                "backpressure_applied",
                f"text-streamer: max_concurrency of {self.max_streams} streams reached; "
                f"retry after {self.retry_after_s:g} s",
                retry_after_s=self.retry_after_s,
            )
        self.open.add(connection.id)
        return ConnectionResult("accepted", f"stream {connection.id} accepted")

    async def handle_disconnect(self, connection: StreamConnection) -> None:
        self.open.discard(connection.id)
