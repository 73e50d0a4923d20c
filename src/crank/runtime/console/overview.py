"""The overview page's numbers: health, workers, queue, throughput, budget.

Everything comes from where ``/v1/status`` and ``/metrics`` take it: the broker's
queue statistics, the supervisor's view of its worker processes, the LLM usage
store and the worker processes' outcome counters. Nothing here is remembered by
the console beyond the throughput readings (see :mod:`.throughput`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool

from crank.runtime.brokers.contract import band_priorities

if TYPE_CHECKING:
    from crank.runtime.console.throughput import OutcomeWindow, Rates
    from crank.runtime.http.services import RuntimeServices
    from crank.runtime.usage import BudgetState


def band_label(band: int) -> str:
    """A priority band as the priorities it holds: ``0``, ``4 to 7``, ``64 and above``."""
    near, far = band_priorities(band)
    if far is None:
        return f"{near} and above" if band > 0 else f"{near} and below"
    low, high = sorted((near, far))
    return str(low) if low == high else f"{low} to {high}"


@dataclass(frozen=True)
class QueueRow:
    """One capability's pending tasks, in total and per priority band (highest first),
    and how many of them are retries waiting out their backoff."""

    capability: str
    pending: int
    bands: tuple[tuple[str, int], ...]
    backing_off: int = 0


@dataclass(frozen=True)
class WorkerRow:
    """One worker as its processes report it."""

    name: str
    state: str
    reason: str | None
    capabilities: tuple[str, ...]
    ready_processes: int | None
    live: bool


@dataclass(frozen=True)
class Overview:
    health: str
    problems: tuple[str, ...]
    ready: bool
    ready_problems: tuple[str, ...]
    processes_total: int
    processes_healthy: int
    #: None: the pool does not report its workers one by one.
    workers: tuple[WorkerRow, ...] | None
    #: the queue's numbers: None when unknown (the broker did not answer).
    queue: tuple[QueueRow, ...] | None
    running: int | None
    dead_letters: int | None
    oldest_pending_s: int | None
    rates: Rates | None
    budget: BudgetState
    paused: tuple[str, ...]
    last_decision: dict[str, Any] | None


def _workers(report: dict[str, Any]) -> tuple[WorkerRow, ...] | None:
    found = report.get("workers")
    if not isinstance(found, dict):
        return None
    return tuple(
        WorkerRow(
            name=name,
            state=str(doc.get("state", "unknown")),
            reason=doc.get("reason"),
            capabilities=tuple(doc.get("capabilities", ())),
            ready_processes=doc.get("ready_processes"),
            live=bool(doc.get("live", True)),
        )
        for name, doc in sorted(found.items())
    )


def _queue(services: RuntimeServices, capabilities: list[str]) -> tuple[QueueRow, ...] | None:
    stats, _ = services.status.queue_stats()
    if stats is None:
        return None
    pending = dict(stats.pending)
    by_band = dict(stats.pending_by_priority)
    backing_off = dict(stats.backing_off)
    rows = []
    for cap in sorted(set(capabilities) | set(pending)):
        bands = by_band.get(cap, {})
        rows.append(
            QueueRow(
                cap,
                pending.get(cap, 0),
                tuple((band_label(b), n) for b, n in sorted(bands.items(), reverse=True) if n),
                backing_off.get(cap, 0),
            )
        )
    return tuple(rows)


def _known(count: Any) -> int | None:
    """A number of the report, or None where it is null (unknown)."""
    return None if count is None else int(count)


def _gather(services: RuntimeServices, window: OutcomeWindow) -> Overview:
    status = services.status
    report = status.report()
    ready, ready_problems = status.ready()
    pool = report["worker_pool_health"]
    queue = report["queue_health"]
    capabilities = [r.capability_id for r in services.router.routes()]
    return Overview(
        health=report["overall_health"],
        problems=tuple(report["problems"]),
        ready=ready,
        ready_problems=tuple(ready_problems),
        processes_total=int(pool["total_workers"]),
        processes_healthy=int(pool["healthy_workers"]),
        workers=_workers(report),
        queue=_queue(services, capabilities),
        running=_known(queue["running_tasks"]),
        dead_letters=_known(queue["dead_letters"]),
        oldest_pending_s=_known(queue["oldest_task_age_seconds"]),
        rates=window.rates(),
        budget=status.budget(),
        paused=tuple(report["paused_capabilities"]),
        last_decision=report.get("last_scaling_decision"),
    )


async def gather_overview(services: RuntimeServices, window: OutcomeWindow) -> Overview:
    """Read everything the overview shows (broker and files: on a worker thread)."""
    return await run_in_threadpool(_gather, services, window)


__all__ = ["Overview", "QueueRow", "WorkerRow", "band_label", "gather_overview"]
