"""What the control plane knows right now: queue, pool, budget — cached briefly.

:class:`StatusTracker` is shared by the HTTP app (readiness, overload checks,
paused capabilities, ``/v1/status``, ``/metrics``) and the supervisor (scaling
inputs). Broker statistics are cached for ``ttl_s`` so a burst of requests costs
one ``stats()`` round trip, not one per request.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Protocol

from crank.runtime.health_report import SystemSnapshot, health_report, resource_utilization
from crank.runtime.logs import get_logger
from crank.runtime.usage import BudgetState, budget_state, paused_capabilities, utc_day

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from crank.runtime.brokers.contract import Broker, QueueStats
    from crank.runtime.usage import BudgetLevel, UsageStore
    from crank.runtime.worker_reports import WorkerHealth


class PoolView(Protocol):
    """What the supervisor tells about its worker processes."""

    def worker_counts(self) -> tuple[int, int]:
        """(total processes, healthy processes)."""
        ...

    def last_decision(self) -> dict[str, Any] | None: ...

    def worker_health(self) -> dict[str, WorkerHealth]:
        """Each worker as the live processes report it."""
        ...

    def crashes(self) -> int:
        """Processes that died without being asked to, lately."""
        ...

    def stale_processes(self) -> list[str]:
        """Live processes that stopped reporting."""
        ...

    def replaced_unlive(self) -> int:
        """Processes stopped and replaced so far for staying not live."""
        ...

    def problem(self) -> str | None:
        """Why this view of the pool cannot be trusted now, or None."""
        ...


#: the budget's thresholds, lowest first: each is announced once a day, when crossed.
ALERT_LEVELS: tuple[BudgetLevel, ...] = ("warning", "exhausted")
#: the most of its time a process spends reading queue stats (see ``stats_ttl``).
STATS_TIME_SHARE = 0.05


class StatusTracker:
    def __init__(
        self,
        broker: Broker,
        *,
        min_workers: int,
        pool: PoolView | None = None,
        usage: UsageStore | None = None,
        daily_budget_usd: float | None = None,
        budget_warn_ratio: float = 0.8,
        non_essential: Iterable[str] = (),
        ttl_s: float = 0.25,
        on_budget_level: Callable[[BudgetState], None] | None = None,
    ) -> None:
        self.broker = broker
        self.min_workers = min_workers
        self.pool = pool
        self.usage = usage
        self.daily_budget_usd = daily_budget_usd
        self.budget_warn_ratio = budget_warn_ratio
        self.non_essential = frozenset(non_essential)
        self.ttl_s = ttl_s
        self.on_budget_level = on_budget_level
        #: per capability, what its batches came to (``batching`` in the report).
        self.batches: Callable[[], dict[str, Any]] | None = None
        #: the processes serving HTTP (``http_processes`` in the report), when several.
        self.http: Callable[[], dict[str, int] | None] | None = None
        self._lock = threading.Lock()
        #: (read at, stats, broker reachable, submits this process had made when the
        #: read began, and when it ended: those in between may or may not be counted).
        self._stats: tuple[float, QueueStats | None, bool, int, int] = (
            -1e18,
            None,
            False,
            0,
            0,
        )
        #: seconds the last two stats reads took (see :meth:`stats_ttl`).
        self._read_s = (0.0, 0.0)
        #: stats reads under way (on any thread), and their end, to wait for.
        self._reading = 0
        self._read_ended = threading.Condition(self._lock)
        self._budget: tuple[float, BudgetState] = (-1e18, BudgetState("unlimited", 0.0, None))
        #: (UTC day, the highest threshold announced that day).
        self._announced: tuple[str, BudgetLevel] = ("", "ok")
        #: tasks submitted through this process, ever.
        self._submitted = 0
        #: a refresh of a stale budget running on a thread (see ``budget(wait=False)``).
        self._refreshing = False

    # -- queue -----------------------------------------------------------------

    def queue_stats(
        self, *, fresh: bool = False, wait: bool = True
    ) -> tuple[QueueStats | None, bool]:
        """(stats or None, broker reachable).

        ``wait=False`` never calls the broker: the cached stats, however old. While
        another thread reads them, this waits for that read instead of making another
        (``fresh=True`` reads anyway).
        """
        now = time.monotonic()
        with self._lock:
            at, stats, ok, _, _ = self._stats
            if not wait or (not fresh and now - at < self.stats_ttl()):
                return stats, ok
            if self._reading and not fresh:
                while self._reading:
                    self._read_ended.wait()
                _, stats, ok, _, _ = self._stats
                return stats, ok
            self._reading += 1
            counted = self._submitted
        started = time.monotonic()
        try:
            try:
                stats, ok = self.broker.stats(), True
            except Exception:
                stats, ok = None, False
            with self._lock:
                # submits made while the stats were read stay counted (never low); a
                # read that began before the one cached ended does not replace it
                if now >= self._stats[0]:
                    self._stats = (now, stats, ok, counted, self._submitted)
        finally:
            with self._lock:
                self._reading -= 1
                self._read_s = (self._read_s[1], time.monotonic() - started)
                self._read_ended.notify_all()
        return stats, ok

    def stats_ttl(self) -> float:
        """How long cached stats are used: ``ttl_s``, or 20 times as long as the last
        two reads took (the shorter), whichever is longer. Counting a deep SQLite queue
        takes time (a GROUP BY over every ready task, about 25 ms per 100,000 on the
        development machine): reads of it keep to a twentieth of the time, so the
        stats of half a million queued tasks may be a few seconds old. One slow read
        (a busy machine, a pause) does not keep the count that long."""
        return max(self.ttl_s, min(self._read_s) / STATS_TIME_SHARE)

    def stats_stale(self) -> bool:
        """Whether :meth:`queue_stats` would call the broker now.

        Asked on every submit, on the event loop: read without the lock (the tuple is
        replaced whole), so a request never waits for a thread that holds it."""
        return time.monotonic() - self._stats[0] >= self.stats_ttl()

    def pending_total(self, *, wait: bool = True) -> int:
        """Pending tasks: the cached count plus what this process queued since it was
        read (never low: tasks done since are not subtracted)."""
        return self._pending_bounds(wait=wait)[0]

    def pending_in_doubt(self, bound: int) -> bool:
        """Whether the cached count reaches ``bound`` only by the submits this process
        made while it was read (they may be in the stats and counted as made since:
        twice). A refusal is not made on such a count; it is read again."""
        most, least = self._pending_bounds(wait=False)
        return least < bound <= most

    def _pending_bounds(self, *, wait: bool) -> tuple[int, int]:
        """(most, least) pending: the cached count plus this process's submits since
        its read began (never low), or since it ended (never high by them)."""
        self.queue_stats(wait=wait)
        with self._lock:  # the stats and the submits they counted: one set
            _, stats, _, began, ended = self._stats
            submitted = self._submitted
        counted = sum(stats.pending.values()) if stats else 0
        return counted + submitted - began, counted + submitted - ended

    def note_submitted(self, count: int = 1) -> None:
        with self._lock:
            self._submitted += count

    # -- budget ----------------------------------------------------------------

    def budget(self, *, wait: bool = True) -> BudgetState:
        """Today's LLM budget state, cached a second; ``wait=False`` (the request path, on
        the event loop) reads it only the first time: later a stale state is returned
        and refreshed on a thread."""
        now = time.monotonic()
        with self._lock:
            at, state = self._budget
            if now - at < max(self.ttl_s, 1.0):
                return state
            if not wait and at > -1e17:
                self._refresh_soon()
                return state
        spent = self.usage.cost_for_day() if self.usage is not None else 0.0
        state = budget_state(spent, self.daily_budget_usd, self.budget_warn_ratio)
        day = utc_day()
        with self._lock:
            self._budget = (now, state)
            crossed = self._crossed(day, state.level)
            if crossed:
                self._announced = (day, crossed[-1])
        if self.on_budget_level is not None:
            for level in crossed:
                self.on_budget_level(replace(state, level=level))
        return state

    def _crossed(self, day: str, level: BudgetLevel) -> tuple[BudgetLevel, ...]:
        """The thresholds up to ``level`` not yet announced today, in order: a jump from
        below the warning to past the budget crosses both (under the lock)."""
        if level not in ALERT_LEVELS:
            return ()
        announced_day, announced = self._announced
        done = 0
        if announced_day == day and announced in ALERT_LEVELS:
            done = ALERT_LEVELS.index(announced) + 1
        return ALERT_LEVELS[done : ALERT_LEVELS.index(level) + 1]

    def paused(self, *, wait: bool = True) -> frozenset[str]:
        return frozenset(paused_capabilities(self.budget(wait=wait), self.non_essential))

    def _refresh_soon(self) -> None:
        """Refresh a stale budget on a thread, one refresh at a time (under the lock)."""
        if self._refreshing:
            return
        self._refreshing = True

        def refresh() -> None:
            try:
                self.budget()
            except Exception:  # noqa: S110 - a failed refresh keeps the last values; next try soon
                pass
            finally:
                with self._lock:
                    self._refreshing = False

        threading.Thread(target=refresh, name="crank-status-refresh", daemon=True).start()

    # -- pool and report ---------------------------------------------------------

    def workers(self) -> dict[str, WorkerHealth]:
        """Each worker's health; empty when there is no local pool to report it.

        With no worker process here (``--max-workers 0``, or a pool scaled to zero
        with ``min_workers`` 0), nothing is known about the workers: they run
        elsewhere, and saying "starting" forever would be false.
        """
        if self.pool is None:
            return {}
        # asked on every call: the processes are counted only when none may be wanted
        if self.min_workers == 0 and self.pool.worker_counts()[0] == 0:
            return {}
        return self.pool.worker_health()

    def unavailable(self, capability_id: str) -> WorkerHealth | None:
        """The worker of ``capability_id`` when it failed to load or is not ready, else None.

        A starting worker is not unavailable: a task queued now waits for it.
        """
        for worker in self.workers().values():
            if capability_id in worker.capabilities and worker.state in ("failed", "not_ready"):
                return worker
        return None

    def snapshot(self) -> SystemSnapshot:
        """What the report and the metrics say now; the broker's numbers are None when
        its statistics could not be read (unknown, not zero)."""
        stats, ok = self.queue_stats()
        total, healthy = self.pool.worker_counts() if self.pool is not None else (0, 0)
        budget = self.budget()
        return SystemSnapshot(
            broker_ok=ok,
            min_workers=self.min_workers,
            total_workers=total,
            healthy_workers=healthy,
            busy_workers=min(healthy, stats.running) if stats else None,
            queue_depth=dict(stats.pending) if stats else None,
            oldest_task_age_s=stats.oldest_pending_age_s if stats else None,
            running_tasks=stats.running if stats else None,
            dead_letters=stats.dead if stats else None,
            resources=resource_utilization(100.0 * budget.ratio),
            paused_capabilities=tuple(sorted(self.paused())),
            last_decision=self.pool.last_decision() if self.pool is not None else None,
            workers=self.workers(),
            crashed_workers=self.pool.crashes() if self.pool is not None else 0,
            replaced_unlive_workers=self.pool.replaced_unlive() if self.pool is not None else 0,
            backing_off=dict(stats.backing_off) if stats else None,
        )

    def report(self) -> dict[str, Any]:
        doc = health_report(self.snapshot(), dt.datetime.now(dt.UTC))
        if self.pool is not None and (blind := self.pool.problem()) is not None:
            # nothing known of the workers: said first, and nothing can be called healthy
            doc["problems"].insert(0, blind)
            doc["overall_health"] = "critical"
        doc["llm_budget"] = self.budget().as_dict()
        doc["batching"] = self.batches() if self.batches is not None else {}
        if self.http is not None:
            doc["http_processes"] = self.http()
        return doc

    def ready(self) -> tuple[bool, list[str]]:
        """Broker answers, ``min_workers`` processes are healthy, every worker is ready."""
        problems: list[str] = []
        try:
            broker_ok = bool(self.broker.ping())
        except Exception:
            broker_ok = False
        if not broker_ok:
            problems.append("broker unreachable")
        if self.pool is not None and (blind := self.pool.problem()) is not None:
            problems.append(blind)
        _, healthy = self.pool.worker_counts() if self.pool is not None else (0, 0)
        if healthy < self.min_workers:
            problems.append(f"{healthy} of min {self.min_workers} worker processes healthy")
        problems += [p for w in self.workers().values() if (p := w.problem()) is not None]
        return not problems, problems

    def live(self) -> tuple[bool, list[str]]:
        """Every worker answers its liveness check and no worker process stopped reporting.

        ``/health`` answers this: the server itself is alive when it can answer at all.
        """
        problems = [
            f"worker {w.name!r} is not live: {w.reason}"
            for w in self.workers().values()
            if not w.live
        ]
        if self.pool is not None:
            if (blind := self.pool.problem()) is not None:
                problems.append(blind)
            problems += [
                f"worker process {consumer} has not reported its health check in time"
                for consumer in self.pool.stale_processes()
            ]
        return not problems, problems


def budget_announcer(count: Callable[[str], None]) -> Callable[[BudgetState], None]:
    """What a budget threshold crossed does: count it by level, and say so in the log."""
    log = get_logger("crank.runtime.budget")

    def announce(state: BudgetState) -> None:
        count(state.level)
        doc: dict[str, Any] = state.as_dict()
        log.warning("llm_budget", budget_level=doc.pop("level"), **doc)

    return announce


__all__ = [
    "ALERT_LEVELS",
    "PoolView",
    "StatusTracker",
    "budget_announcer",
]
