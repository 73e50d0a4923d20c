"""Where a capability's queued tasks wait: one Redis stream per priority band.

This naming is a contract between two layers that must not import each other:
the brokers count and claim tasks by band (:mod:`crank.runtime.brokers.contract`
re-exports the bands), the Redis broker queues them in these streams, and the
generated Kubernetes files (:mod:`crank.generate.k8s`) point a KEDA
``redis-streams`` scaler at every one of them.

Priorities are grouped into bands: 0, and for any other priority the bit length of
its magnitude, capped at :data:`MAX_BAND`, with its sign (1; 2-3; 4-7; ...; 64 and
above), so a capability's tasks sit in at most 15 streams whatever priorities
clients send.
"""

from __future__ import annotations

#: The largest band: priorities of magnitude 64 and above share it.
MAX_BAND = 7
#: Every priority band a task can be queued in, highest first.
PRIORITY_BANDS: tuple[int, ...] = tuple(range(MAX_BAND, -MAX_BAND - 1, -1))


def priority_band(priority: int) -> int:
    """The band a task of ``priority`` is queued in (the broker's ``submit.lua`` computes
    the same)."""
    band = min(abs(int(priority)).bit_length(), MAX_BAND)
    return -band if priority < 0 else band


def stream_key(prefix: str, capability: str, band: int) -> str:
    """The stream holding ``capability``'s tasks of priority ``band`` under ``prefix``."""
    return f"{prefix}:q:{capability}:{band}"


__all__ = ["MAX_BAND", "PRIORITY_BANDS", "priority_band", "stream_key"]
