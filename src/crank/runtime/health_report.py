"""The system health report (``GET /v1/status``, ``crank status``).

:func:`health_report` is pure: the supervisor gathers a :class:`SystemSnapshot`
and this module turns it into the report document. :func:`resource_utilization`
is the one place that reads the machine (``/proc`` and ``os.getloadavg``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from crank.runtime.scaling import bottleneck

if TYPE_CHECKING:
    import datetime as dt
    from collections.abc import Mapping

    from crank.runtime.worker_reports import WorkerHealth

Health = Literal["healthy", "degraded", "critical"]

#: A pending task older than this makes the queue look stuck (degraded).
STALE_TASK_AGE_S = 300.0
#: ``failed_workers`` counts worker processes that crashed within this many seconds.
CRASH_WINDOW_S = 300.0


@dataclass(frozen=True)
class ResourceUtilization:
    cpu_percentage: float = 0.0
    memory_percentage: float = 0.0
    llm_api_usage_percentage: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return {
            "cpu_percentage": round(self.cpu_percentage, 1),
            "memory_percentage": round(self.memory_percentage, 1),
            "llm_api_usage_percentage": round(self.llm_api_usage_percentage, 1),
        }


@dataclass(frozen=True)
class SystemSnapshot:
    """What the report is made of. The numbers read from the broker are None when it did
    not answer: nothing is known of the queue then, and a zero would look like an empty
    one (an alert on dead letters would clear)."""

    broker_ok: bool
    min_workers: int
    total_workers: int
    healthy_workers: int
    #: processes running a task (from the broker's running count: None when unknown).
    busy_workers: int | None
    #: pending tasks per capability (None: unknown).
    queue_depth: Mapping[str, int] | None
    #: how long the longest-waiting ready task has waited (None: unknown).
    oldest_task_age_s: float | None
    running_tasks: int | None = 0
    dead_letters: int | None = 0
    resources: ResourceUtilization = field(default_factory=ResourceUtilization)
    paused_capabilities: tuple[str, ...] = ()
    last_decision: Mapping[str, Any] | None = None
    #: each worker as the worker processes report it (empty: no local pool).
    workers: Mapping[str, WorkerHealth] = field(default_factory=dict)
    #: worker processes that died without being asked to in the last ``CRASH_WINDOW_S``.
    crashed_workers: int = 0
    #: worker processes stopped and replaced since the start for staying not live.
    replaced_unlive_workers: int = 0
    #: of ``queue_depth``, retries waiting out their backoff, per capability (None: unknown).
    backing_off: Mapping[str, int] | None = field(default_factory=dict)


def overall_health(snap: SystemSnapshot) -> tuple[Health, list[str]]:
    """critical: nothing can run; degraded: running below what was asked for."""
    problems: list[str] = []
    if not snap.broker_ok:
        problems.append("broker unreachable")
    if snap.min_workers > 0 and snap.healthy_workers == 0:
        problems.append("no healthy worker process")
    loaded = [w for w in snap.workers.values() if w.state not in ("failed", "not_ready")]
    if snap.workers and not loaded:
        # each worker's reason a problem of its own: one line joining them all was long
        # past reading with a few workers down
        problems += ["no worker can serve", *_worker_problems(snap)]
    if problems:
        if snap.min_workers > 0 and snap.healthy_workers == 0:
            # why no process is healthy: its workers' problems, the crashes
            problems += [p for p in _worker_problems(snap) if p not in problems]
            if snap.crashed_workers:
                problems.append(_crashes(snap))
        return "critical", problems
    problems += _worker_problems(snap)
    if snap.healthy_workers < snap.min_workers:
        problems.append(
            f"{snap.healthy_workers} healthy workers, fewer than min_workers={snap.min_workers}"
        )
    if snap.oldest_task_age_s is None:
        # (only with the broker answering: its being unreachable is critical, above)
        problems.append("the queue's numbers are unknown: the broker's statistics failed")
    elif snap.oldest_task_age_s > STALE_TASK_AGE_S:
        problems.append(f"a task has waited {snap.oldest_task_age_s:.0f} s for a worker")
    if snap.resources.llm_api_usage_percentage >= 100.0:
        problems.append("daily LLM budget exhausted")
    if snap.paused_capabilities:
        problems.append(f"paused capabilities: {', '.join(snap.paused_capabilities)}")
    if snap.crashed_workers:
        problems.append(_crashes(snap))
    return ("degraded" if problems else "healthy"), problems


def _crashes(snap: SystemSnapshot) -> str:
    return f"{snap.crashed_workers} worker process(es) crashed in the last {CRASH_WINDOW_S:.0f} s"


def _worker_problems(snap: SystemSnapshot) -> list[str]:
    workers = snap.workers.values()
    found = [w.problem() for w in workers]
    found += [f"worker {w.name!r} is not live: {w.reason}" for w in workers if not w.live]
    return [p for p in found if p is not None]


def _total(counts: Mapping[str, int] | None) -> int | None:
    return None if counts is None else sum(counts.values())


def _sorted(counts: Mapping[str, int] | None) -> dict[str, int] | None:
    return None if counts is None else dict(sorted(counts.items()))


def health_report(snap: SystemSnapshot, now: dt.datetime) -> dict[str, Any]:
    """The report document; the queue's numbers (and the utilization, which counts the
    running tasks) are null while the broker does not answer."""
    health, problems = overall_health(snap)
    total = snap.total_workers
    busy = snap.busy_workers
    utilization = None if busy is None else round(100.0 * busy / total if total else 0.0, 1)
    age = snap.oldest_task_age_s
    report: dict[str, Any] = {
        "timestamp": now.isoformat(),
        "overall_health": health,
        "problems": problems,
        "worker_pool_health": {
            "total_workers": total,
            "healthy_workers": snap.healthy_workers,
            "failed_workers": snap.crashed_workers,
            "failed_workers_window_s": int(CRASH_WINDOW_S),
            "replaced_unlive_workers": snap.replaced_unlive_workers,
            "utilization_percentage": utilization,
        },
        "workers": {name: w.as_dict() for name, w in sorted(snap.workers.items())},
        "queue_health": {
            "total_pending_tasks": _total(snap.queue_depth),
            "oldest_task_age_seconds": None if age is None else int(age),
            "bottleneck_agent": bottleneck(snap.queue_depth or {}),
            "running_tasks": snap.running_tasks,
            "dead_letters": snap.dead_letters,
            "pending_by_capability": _sorted(snap.queue_depth),
            # of the pending: retries waiting out their backoff (no worker can take them
            # yet; a downstream that keeps failing shows here first)
            "backing_off_tasks": _total(snap.backing_off),
            "backing_off_by_capability": _sorted(snap.backing_off),
        },
        "resource_utilization": snap.resources.as_dict(),
        "paused_capabilities": list(snap.paused_capabilities),
    }
    if snap.last_decision is not None:
        report["last_scaling_decision"] = dict(snap.last_decision)
    return report


def _meminfo(path: Path = Path("/proc/meminfo")) -> float:
    try:
        fields = dict(line.split(":", 1) for line in path.read_text().splitlines() if ":" in line)
        total = float(fields["MemTotal"].split()[0])
        available = float(fields["MemAvailable"].split()[0])
    except (OSError, KeyError, ValueError, IndexError):
        return 0.0
    return 100.0 * (total - available) / total if total else 0.0


def resource_utilization(llm_api_usage_percentage: float = 0.0) -> ResourceUtilization:
    """CPU (1-minute load over cores) and memory in use on this machine."""
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = 0.0
    cpu = min(100.0, 100.0 * load / (os.cpu_count() or 1))
    return ResourceUtilization(cpu, _meminfo(), llm_api_usage_percentage)


__all__ = [
    "CRASH_WINDOW_S",
    "STALE_TASK_AGE_S",
    "ResourceUtilization",
    "SystemSnapshot",
    "health_report",
    "overall_health",
    "resource_utilization",
]
