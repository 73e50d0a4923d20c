"""The supervisor: keeps min..max worker processes alive, replaces the dead, scales on depth.

Each worker is a ``python -m crank.runtime.worker_process`` child with its own
consumer name. A monitor thread checks the children every
``monitor_interval_s``: a child that exited without being asked to has its
in-flight tasks made deliverable again at once (``broker.recover(consumer)``)
and is replaced by a new process — within one interval, far inside 5 s. Every
``scale_interval_s`` (prod mode, dynamic pool) it asks the pure policy in
:mod:`crank.runtime.scaling` for a decision and applies it: new children to
scale up, SIGTERM (finish in-flight, release the rest) to the newest to scale down,
idle ones (running no task, by their last report) first.

Each child reports its workers (loaded or failed, ready, live) on a pipe of its
own (:mod:`crank.runtime.worker_reports`); a reader thread per child keeps its
latest report. A process is *healthy* when it is alive, reported within
``stale_after_s`` and every worker it loaded answers its liveness check. A process
not live for ``replace_unlive_s`` without a break is stopped and replaced (no crash).
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import datetime as dt
import functools
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from crank.errors import CrankError
from crank.manifest import load_manifest
from crank.runtime.health_report import CRASH_WINDOW_S
from crank.runtime.logs import get_logger
from crank.runtime.scaling import RuntimeMetrics, ScalingDecision, decide
from crank.runtime.worker_reports import (
    PARENT_GONE_SIGNAL,
    REPORT_FD_ENV,
    ProcessReport,
    WorkerHealth,
    fold_reports,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from typing import BinaryIO

    from crank.runtime.brokers.contract import Broker
    from crank.runtime.config import RuntimeConfig
    from crank.runtime.status_tracker import StatusTracker

WORKER_MODULE = "crank.runtime.worker_process"
#: the worker processes of manifests with batching or concurrency run this one instead.
BATCHING_MODULE = "crank.runtime.batching_loop"
#: a child dying sooner than this after its start counts towards a crash loop.
QUICK_DEATH_S = 5.0
#: how long past its grace a stopped child may take to exit before it is killed.
STOP_SLACK_S = 2.0
MAX_RESTART_BACKOFF_S = 30.0


@dataclass
class WorkerChild:
    consumer: str
    proc: subprocess.Popen[bytes]
    started_at: float
    stopping: bool = False
    #: the latest report of its workers, and when it came (the supervisor's clock).
    report: ProcessReport | None = None
    reported_at: float | None = None
    #: since when it has been seen not live without a break (None: live).
    unlive_since: float | None = None
    #: asked to stop: killed if still alive then (the grace, and a little slack to exit).
    kill_at: float | None = None

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None


@dataclass
class PoolEvents:
    """Counts of what happened to the pool (status, tests, logs)."""

    spawned: int = 0
    died: int = 0
    replaced: int = 0
    #: processes stopped and replaced for staying not live (see ``replace_unlive_s``).
    replaced_unlive: int = 0
    recovered_tasks: int = 0
    stopped: int = 0
    decisions: list[dict[str, Any]] = field(default_factory=list)


def die_with_parent() -> Callable[[], None] | None:
    """On Linux, a child setup that sends the child ``PARENT_GONE_SIGNAL`` (SIGHUP) when
    its parent dies.

    Without it, ``kill -9`` of ``crank run`` would leave its worker processes running
    as orphans; with it they drain and release their tasks like on a normal stop.
    The kernel sends the signal once per thread of the dying parent the child is
    handed to, so it is not SIGTERM, whose second delivery cuts a worker's grace.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None
    pr_set_pdeathsig = 1

    def setup() -> None:
        libc.prctl(pr_set_pdeathsig, PARENT_GONE_SIGNAL)

    return setup


@functools.cache
def _worker_module(manifest_paths: tuple[str, ...]) -> str:
    """The batching loop's module when a manifest declares batching or concurrency."""
    try:
        manifests = [load_manifest(path) for path in manifest_paths]
    except CrankError:
        return WORKER_MODULE  # the worker process reports what is wrong with it
    if any(cap.batched_or_concurrent for m in manifests for cap in m.capabilities):
        return BATCHING_MODULE
    return WORKER_MODULE


def _running(child: WorkerChild) -> int:
    """The tasks ``child`` said it runs in its last report (0 before its first)."""
    return child.report.running if child.report is not None else 0


def _same_objects(old: tuple[object, ...], new: tuple[object, ...]) -> bool:
    return len(old) == len(new) and all(a is b for a, b in zip(old, new, strict=True))


def worker_command(config: RuntimeConfig, consumer: str) -> list[str]:
    """The argv of one worker process (``python -m crank.runtime.worker_process ...``)."""
    module = _worker_module(tuple(str(p) for p in config.manifest_paths))
    argv = [
        sys.executable, "-m", module,
        "--broker", config.broker_url,
        "--consumer", consumer,
        "--batch-size", str(config.worker_batch_size),
        "--visibility-timeout", f"{config.visibility_timeout_s:g}",
        "--grace", f"{config.grace_s:g}",
        "--health-interval", f"{config.health_interval_s:g}",
    ]  # fmt: skip
    for path in config.manifest_paths:
        argv += ["--manifest", str(path)]
    return argv


class Supervisor:
    def __init__(
        self,
        config: RuntimeConfig,
        broker: Broker,
        *,
        status: StatusTracker | None = None,
        capabilities: Sequence[str] = (),
        workers: Mapping[str, Sequence[str]] | None = None,
        env: Mapping[str, str] | None = None,
        command: Callable[[RuntimeConfig, str], list[str]] = worker_command,
        log: Any = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.broker = broker
        self.status = status
        self.command = command
        self.env = dict(os.environ if env is None else env)
        self.log = log or get_logger("crank.runtime.supervisor")
        self.events = PoolEvents()
        self._children: list[WorkerChild] = []
        self._lock = threading.RLock()
        self._serial = 0
        self._stop = threading.Event()
        #: a second stop signal came: every child stops at once (see :meth:`cut_grace`).
        self._cut = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_scale = 0.0
        self.clock = clock
        #: replacements owed for children that died; paid once any backoff is over.
        self._owed = 0
        self._crash_streak = 0
        self._last_exit_code: int | None = None
        self._hold_until = 0.0
        self._last_decision: dict[str, Any] | None = None
        #: worker name -> its capability ids: what the children are expected to report.
        self.workers: dict[str, tuple[str, ...]] = {
            name: tuple(caps) for name, caps in (workers or {}).items()
        }
        #: a report older than this makes its process unhealthy (hung, or too busy to check).
        self.stale_after_s = max(10.0, 3.0 * config.health_interval_s)
        #: when children died without being asked to (for ``failed_workers``).
        self._crashes: collections.deque[float] = collections.deque()
        self._last_states: dict[str, tuple[str, str | None]] = {}
        #: called once with every worker's health when none is starting any more.
        self.on_workers_known: Callable[[dict[str, WorkerHealth]], None] | None = None
        self._announced = False
        #: the reports last folded into each worker's health (and those of the processes
        #: that stopped reporting), and that health.
        self._folded: (
            tuple[
                tuple[ProcessReport, ...],
                tuple[tuple[str, ProcessReport], ...],
                dict[str, WorkerHealth],
            ]
            | None
        ) = None
        #: the processes last seen not reporting (logged once as they stop, and again
        #: when they report).
        self._unresponsive: set[str] = set()
        caps = sorted(set(capabilities) | {c for cs in self.workers.values() for c in cs})
        self.weights: dict[str, float] = {c: 1.0 / len(caps) for c in caps} if caps else {}
        self._prefix = f"{socket.gethostname()}-{os.getpid()}"

    # -- PoolView ---------------------------------------------------------------

    def worker_counts(self) -> tuple[int, int]:
        """(processes, healthy processes): alive, reporting, and their workers live."""
        now = self.clock()
        with self._lock:
            live = [c for c in self._children if not c.stopping]
            return len(live), sum(1 for c in live if self._healthy(c, now))

    def _healthy(self, child: WorkerChild, now: float) -> bool:
        if not child.alive or child.report is None or child.reported_at is None:
            return False
        return now - child.reported_at <= self.stale_after_s and child.report.live

    def _silent_for(self, child: WorkerChild, now: float) -> float:
        """Seconds since ``child`` last reported (since it started, before its first report)."""
        return now - (child.reported_at if child.reported_at is not None else child.started_at)

    def worker_health(self) -> dict[str, WorkerHealth]:
        """Each expected worker, folded from the latest reports of the live processes.

        The report of a process that stopped reporting (hung) is not counted: it says
        what was true then; the worker it hosts is named not live instead.
        """
        now = self.clock()
        with self._lock:
            live = [
                c for c in self._children if not c.stopping and c.alive and c.report is not None
            ]
            stale = tuple(
                (c.consumer, c.report)
                for c in live
                if c.report is not None and self._silent_for(c, now) > self.stale_after_s
            )
            hung = {consumer for consumer, _ in stale}
            reports = tuple(
                c.report for c in live if c.report is not None and c.consumer not in hung
            )
        # asked on every call (is its worker available?): folded again only when a
        # report changed (reports are frozen: the same objects, the same health)
        folded = self._folded
        if folded is None or not _same_objects(folded[0], reports) or folded[1] != stale:
            folded = self._folded = (reports, stale, fold_reports(self.workers, reports, stale))
        health = dict(folded[2])
        looping = self.crash_loop()
        if looping is not None:
            # "no process has reported yet" would read as a slow start; say why none did
            for name, worker in health.items():
                if worker.state == "starting" and not worker.ready_processes:
                    health[name] = replace(worker, reason=looping)
        return health

    def crash_loop(self) -> str | None:
        """Why no worker process stays up, while they keep exiting as they start; else None."""
        with self._lock:
            reported = any(c.alive and c.report is not None for c in self._children)
            if self._crash_streak < 2 or reported:  # one that reported broke the loop
                return None
            streak, code = self._crash_streak, self._last_exit_code
            wait = max(0.0, self._hold_until - self.clock())
        after = f"; the next starts in {wait:.0f} s" if wait >= 1 else ""
        return (
            f"worker processes keep exiting as they start ({streak} in a row, the last "
            f"with exit code {code}){after}: read their stderr in the log"
        )

    def crashes(self) -> int:
        """Worker processes that died without being asked to in the last ``CRASH_WINDOW_S``."""
        cutoff = self.clock() - CRASH_WINDOW_S
        with self._lock:
            while self._crashes and self._crashes[0] < cutoff:
                self._crashes.popleft()
            return len(self._crashes)

    def stale_processes(self) -> list[str]:
        """Consumers of live processes that have not reported within ``stale_after_s``."""
        now = self.clock()
        with self._lock:
            return [
                c.consumer
                for c in self._children
                if not c.stopping and c.alive and self._silent_for(c, now) > self.stale_after_s
            ]

    def watch_reports(self) -> None:
        """Log each process as it stops reporting (hung), and as it reports again."""
        now = self.clock()
        with self._lock:
            children = {c.consumer: c for c in self._children if not c.stopping and c.alive}
        stale = {
            name for name, c in children.items() if self._silent_for(c, now) > self.stale_after_s
        }
        for name in sorted(stale - self._unresponsive):
            child = children[name]
            self.log.warning(
                "worker_unresponsive",
                consumer=name,
                pid=child.proc.pid,
                since_last_report_s=round(self._silent_for(child, now), 1),
                hint="a hung process (a deadlock, a stopped process, a call that holds the GIL)",
            )
        for name in sorted((self._unresponsive - stale) & children.keys()):
            self.log.info("worker_responsive_again", consumer=name, pid=children[name].proc.pid)
        self._unresponsive = stale

    def replaced_unlive(self) -> int:
        """Worker processes stopped and replaced so far for staying not live."""
        return self.events.replaced_unlive

    def last_decision(self) -> dict[str, Any] | None:
        return self._last_decision

    def problem(self) -> str | None:
        return None  # the supervisor's own memory: nothing between it and the truth

    def consumers(self) -> list[str]:
        with self._lock:
            return [c.consumer for c in self._children if not c.stopping]

    def pids(self) -> list[int]:
        with self._lock:
            return [c.proc.pid for c in self._children if not c.stopping and c.alive]

    # -- children -------------------------------------------------------------------

    def _spawn(self) -> WorkerChild:
        # the child writes its reports to ``write_fd``; only it holds that end, so the
        # reader sees end-of-file when the child exits
        read_fd, write_fd = os.pipe()
        try:
            with self._lock:
                self._serial += 1
                consumer = f"{self._prefix}-w{self._serial}"
                proc = subprocess.Popen(
                    self.command(self.config, consumer),
                    env={**self.env, REPORT_FD_ENV: str(write_fd)},
                    pass_fds=(write_fd,),
                    preexec_fn=die_with_parent(),
                    # a group of its own: Ctrl-C in a terminal reaches crank run alone,
                    # which stops the children once (a second signal cuts their grace)
                    process_group=0,
                )
                child = WorkerChild(consumer, proc, self.clock())
                self._children.append(child)
                self.events.spawned += 1
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        reader = threading.Thread(
            target=self._read_reports,
            args=(child, os.fdopen(read_fd, "rb")),
            name=f"crank-reports-{consumer}",
            daemon=True,
        )
        reader.start()
        self.log.info("worker_started", consumer=consumer, pid=proc.pid)
        return child

    def _read_reports(self, child: WorkerChild, stream: BinaryIO) -> None:
        """Keep ``child``'s latest report until its pipe closes (the child exited)."""
        with stream:
            for line in stream:
                try:
                    report = ProcessReport.from_line(line)
                except (ValueError, KeyError, TypeError) as exc:
                    self.log.warning(
                        "worker_report_unreadable", consumer=child.consumer, error=str(exc)
                    )
                    continue
                with self._lock:
                    child.report, child.reported_at = report, self.clock()

    def _retire(self, child: WorkerChild) -> None:
        """Ask one child to stop: it finishes in-flight tasks and releases the rest; one
        still alive after the grace period (hung: it cannot act on SIGTERM) is killed."""
        child.stopping = True
        child.kill_at = self.clock() + self.config.grace_s + STOP_SLACK_S
        if child.alive:
            child.proc.send_signal(signal.SIGTERM)
        self.events.stopped += 1
        self.log.info("worker_stopping", consumer=child.consumer, pid=child.proc.pid)

    def _recover(self, child: WorkerChild) -> int:
        try:
            count = int(self.broker.recover(child.consumer))
        except Exception as exc:
            self.log.warning("recover_failed", consumer=child.consumer, error=str(exc))
            return 0
        self.events.recovered_tasks += count
        return count

    def check_children(self) -> int:
        """Reap exited children; recover and replace the ones that died. Returns replacements.

        A child that exits by itself within ``QUICK_DEATH_S`` of its start twice in a row is
        crash-looping (a broken import, a missing dependency): its replacements
        then back off exponentially up to ``MAX_RESTART_BACKOFF_S`` instead of
        respawning twice a second; a child that lived longer resets the streak.
        """
        now = self.clock()
        with self._lock:
            overdue = [
                c
                for c in self._children
                if c.stopping and c.kill_at is not None and now >= c.kill_at and c.alive
            ]
        for child in overdue:
            self.log.warning(
                "worker_killed_after_grace", consumer=child.consumer, grace_s=self.config.grace_s
            )
            with contextlib.suppress(ProcessLookupError):
                child.proc.kill()
            child.kill_at = None
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.proc.wait(timeout=5)  # reaped below, its tasks recovered
        with self._lock:
            exited = [c for c in self._children if not c.alive]
            self._children = [c for c in self._children if c.alive]
        for child in exited:
            recovered = self._recover(child)
            if child.stopping:
                self.log.info("worker_stopped", consumer=child.consumer, recovered=recovered)
                continue
            self.events.died += 1
            self._crashes.append(now)
            self._owed += 1
            # Killed by a signal (kill -9, OOM killer) is the outside world, not a crash loop.
            exited_itself = (child.proc.returncode or 0) >= 0
            quick = exited_itself and now - child.started_at < QUICK_DEATH_S
            self._crash_streak = self._crash_streak + 1 if quick else 0
            self._last_exit_code = child.proc.returncode
            if self._crash_streak >= 2:
                delay = min(MAX_RESTART_BACKOFF_S, 0.5 * 2.0 ** (self._crash_streak - 2))
                self._hold_until = now + delay
            self.log.warning(
                "worker_died",
                consumer=child.consumer,
                pid=child.proc.pid,
                exit_code=child.proc.returncode,
                recovered_tasks=recovered,
                crash_streak=self._crash_streak,
            )
            if self._crash_streak >= 2:
                self.log.error(
                    "worker_crash_loop",
                    hint="worker processes exit right after starting; read their stderr above",
                    restart_in_s=round(self._hold_until - now, 2),
                )
        if self._stop.is_set() or now < self._hold_until:
            return 0
        replaced = 0
        for _ in range(self._owed):
            self._spawn()
            self.events.replaced += 1
            replaced += 1
        self._owed = 0
        total, _ = self.worker_counts()
        for _ in range(self.config.min_workers - total):
            self._spawn()
        return replaced

    def _unlive_reason(self, child: WorkerChild, now: float) -> str | None:
        """Why ``child`` is not live now (what ``/health`` says of it), or None."""
        silent = self._silent_for(child, now)
        if silent > self.stale_after_s:
            return f"it has not reported its health check for {silent:.0f} s (hung, or too busy)"
        if child.report is not None and not child.report.live:
            return "; ".join(
                w.reason or f"worker {w.name!r} is not live"
                for w in child.report.workers
                if not w.live
            )
        return None

    def replace_unlive(self) -> int:
        """Stop and replace each process not live for ``replace_unlive_s`` without a break.

        Stopped as a stop does (SIGTERM, the grace, then killed); its tasks come back
        through the usual recovery. The replacement starts at once: no crash, so no
        crash-loop streak nor backoff. ``replace_unlive_s`` 0: never (an outside probe
        decides). Returns the processes replaced.
        """
        limit = self.config.replace_unlive_s
        now = self.clock()
        due: list[tuple[WorkerChild, str, float]] = []
        with self._lock:
            for child in self._children:
                if child.stopping or not child.alive:
                    continue
                reason = self._unlive_reason(child, now)
                if reason is None:
                    child.unlive_since = None
                    continue
                if child.unlive_since is None:
                    child.unlive_since = now
                if limit > 0 and now - child.unlive_since >= limit:
                    due.append((child, reason, now - child.unlive_since))
        if self._stop.is_set():
            return 0
        for child, reason, unlive_s in due:
            self.log.error(
                "worker_replaced_unlive",
                consumer=child.consumer,
                pid=child.proc.pid,
                reason=reason,
                unlive_for_s=round(unlive_s, 1),
                replace_unlive_s=limit,
            )
            self.events.replaced_unlive += 1
            self._retire(child)
            self._spawn()
        return len(due)

    # -- scaling --------------------------------------------------------------------

    def runtime_metrics(self) -> RuntimeMetrics:
        stats = (
            self.status.queue_stats(fresh=True)[0]
            if self.status is not None
            else self.broker.stats()
        )
        total, _ = self.worker_counts()
        running = stats.running if stats else 0
        # the work a new process could take now: retries waiting out their backoff are
        # left out (a downstream outage backs off every task: no reason for more workers)
        depth, left_out = self._takeable(stats.ready() if stats else {})
        active = min(total, running)
        return RuntimeMetrics(
            queue_depth=depth,
            active_workers=active,
            idle_workers=total - active,
            failed_workers=self.crashes(),
            weights=self.weights,
            left_out=left_out,
        )

    def _takeable(self, depth: Mapping[str, int]) -> tuple[dict[str, int], dict[str, int]]:
        """(the depths of capabilities a ready worker here serves, the others): more
        processes would not run tasks whose worker failed to load or is not ready, nor
        those of a capability no worker here declares. With no process (a pool scaled to
        zero) no worker is known to be broken: only a process started for the tasks
        would load it, so every task of a declared capability counts."""
        if not self.workers:  # who serves what is not known: every task counts
            return dict(depth), {}
        if self.worker_counts()[0] == 0:
            declared = {cap for caps in self.workers.values() for cap in caps}
            kept = {cap: n for cap, n in depth.items() if cap in declared}
            return kept, {cap: n for cap, n in depth.items() if cap not in declared and n > 0}
        serving = {
            cap
            for worker in self.worker_health().values()
            if worker.state == "ready"
            for cap in worker.capabilities
        }
        kept = {cap: n for cap, n in depth.items() if cap in serving}
        return kept, {cap: n for cap, n in depth.items() if cap not in serving and n > 0}

    def scale_step(self, now: dt.datetime | None = None) -> ScalingDecision:
        """Take and apply one scaling decision."""
        decision = decide(
            self.config.scaling(), self.runtime_metrics(), now or dt.datetime.now(dt.UTC)
        )
        doc = decision.as_dict()
        self._last_decision = doc
        self.weights = decision.new_weights(self.weights)
        if decision.decision_type != "maintain":
            self.events.decisions.append(doc)
            del self.events.decisions[:-50]
            self.log.info("scaling_decision", **doc)
        delta = decision.target_workers - decision.current_workers
        for _ in range(max(0, delta)):
            self._spawn()
        if delta < 0:
            with self._lock:
                newest_first = [c for c in self._children if not c.stopping][::-1]
            # idle ones first: a busy one's running task would be cut at its grace period
            # and run again from the start elsewhere
            by_idleness = sorted(newest_first, key=lambda c: _running(c) > 0)
            for child in by_idleness[:-delta]:
                self._retire(child)
        return decision

    # -- lifecycle ------------------------------------------------------------------

    def start(self) -> None:
        for _ in range(self.config.min_workers):
            self._spawn()
        self._thread = threading.Thread(target=self._monitor, name="crank-supervisor", daemon=True)
        self._thread.start()

    def _monitor(self) -> None:
        while not self._stop.wait(self.config.monitor_interval_s):
            try:
                self.check_children()
                self.replace_unlive()
                self.watch_workers()
                if self.status is not None:
                    # reads today's LLM cost (cached 1 s): announces 80 % / 100 % even when idle
                    self.status.budget()
                due = time.monotonic() - self._last_scale >= self.config.scale_interval_s
                if self.config.dynamic_pool and due:
                    self._last_scale = time.monotonic()
                    self.scale_step()
            except Exception as exc:
                self.log.error("supervisor_tick_failed", error=repr(exc))

    def watch_workers(self) -> dict[str, WorkerHealth]:
        """Log each worker whose state changed; announce them once none is starting."""
        self.watch_reports()
        health = self.worker_health()
        for name, worker in health.items():
            state = (worker.state, worker.reason if worker.state != "starting" else None)
            if self._last_states.get(name, ("starting", None)) != state:
                level = self.log.info if worker.state in ("ready", "starting") else self.log.error
                level(f"worker_{worker.state}", worker=name, reason=worker.reason)
            self._last_states[name] = state
        total, _ = self.worker_counts()
        if total:
            settled = all(w.state != "starting" for w in health.values())
        else:  # no process to report: known only when none is meant to run here
            settled, health = self.config.min_workers == 0, {}
        if settled and not self._announced:
            self._announced = True
            if self.on_workers_known is not None:
                self.on_workers_known(health)
        return health

    def cut_grace(self) -> None:
        """A second stop signal: every child stops at once and gives its tasks back.

        Safe in a signal handler on the thread running :meth:`stop` (no lock, no wait).
        A child gets its first stop signal (SIGTERM) if it had none yet, then SIGINT: a
        second signal of another number, so the two are never merged into one.
        """
        self._cut.set()
        self._stop.set()  # no replacements from now on
        for child in list(self._children):
            self._signal_stop(child)

    def _signal_stop(self, child: WorkerChild) -> None:
        """SIGTERM ``child`` once; after :meth:`cut_grace`, SIGINT too (stop now)."""
        first = not child.stopping
        child.stopping = True
        if not child.alive:
            return
        with contextlib.suppress(ProcessLookupError):
            if first:
                child.proc.send_signal(signal.SIGTERM)
            if self._cut.is_set():
                child.proc.send_signal(signal.SIGINT)

    def stop(self, grace_s: float | None = None) -> None:
        """SIGTERM every child, wait up to ``grace_s``, kill the rest and recover their tasks."""
        grace = self.config.grace_s if grace_s is None else grace_s
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.config.monitor_interval_s + 5)
        with self._lock:
            children = list(self._children)
        for child in children:
            if not child.stopping:
                self._signal_stop(child)
        self.log.info("pool_stopping", workers=len(children), grace_s=grace)
        # The children stop on their own within ``grace``; a little slack for their exit.
        deadline = time.monotonic() + grace + STOP_SLACK_S
        for child in children:
            left = max(0.0, deadline - time.monotonic())
            try:
                child.proc.wait(timeout=left)
            except subprocess.TimeoutExpired:
                self.log.warning(
                    "worker_killed_after_grace", consumer=child.consumer, grace_s=grace
                )
                child.proc.kill()
                child.proc.wait()
            self._recover(child)
        with self._lock:
            self._children = []
        self.log.info("pool_stopped", workers=len(children))


__all__ = [
    "WORKER_MODULE",
    "PoolEvents",
    "Supervisor",
    "WorkerChild",
    "die_with_parent",
    "worker_command",
]
