"""What each worker process tells the supervisor about the workers it hosts.

A worker process loads every manifest it is given. A worker that fails to load
(its module cannot be imported, its handlers do not match the manifest, its
``setup()`` raises) is reported, not fatal: the process serves the others. Every
``health_interval_s`` the process runs each loaded worker's ``check_readiness()``
and ``check_liveness()`` and writes one :class:`ProcessReport` as a JSON line to
the pipe the supervisor gave it (the file descriptor in ``CRANK_REPORT_FD``).

The supervisor keeps the latest report of each live process and folds them into
one :class:`WorkerHealth` per worker (:func:`fold_reports`), which ``/ready``,
``/health``, ``/v1/status`` and the gateway read: a worker that failed to load or
is not ready makes ``/ready`` 503 and its capabilities answer 503 with the reason.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

#: the environment variable holding the write end of the report pipe.
REPORT_FD_ENV = "CRANK_REPORT_FD"

#: what the kernel sends a worker process when the supervisor dies (``PR_SET_PDEATHSIG``).
#: Not SIGTERM: the kernel sends it again each time the orphan is handed on (to another
#: thread of the dying process, then to init), and a second SIGTERM means "stop now";
#: the worker takes every parent-death signal as the one graceful stop.
PARENT_GONE_SIGNAL = signal.SIGHUP

#: what one process says about one worker ("starting": being imported or set up).
ReportedState = Literal["starting", "ready", "not_ready", "failed"]
#: what the pool says about one worker: "starting" until a process reports it loaded.
WorkerState = ReportedState

_REPORTED: frozenset[str] = frozenset({"starting", "ready", "not_ready", "failed"})


@dataclass(frozen=True)
class WorkerReport:
    """One worker as one process sees it."""

    name: str
    capabilities: tuple[str, ...]
    state: ReportedState
    #: the worker's ``check_liveness()`` (a worker that failed to load is not asked).
    live: bool = True
    #: why it failed or is not ready, or why it is not live; None when all is well.
    reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "capabilities": list(self.capabilities),
            "state": self.state,
            "live": self.live,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class ProcessReport:
    """Every worker of one process, as of its latest health check."""

    workers: tuple[WorkerReport, ...]
    #: tasks whose handler runs in the process now (the supervisor scales down idle
    #: processes first: a busy one's tasks would be cut at the end of its grace period).
    running: int = 0

    @property
    def live(self) -> bool:
        """Every worker of the process that was asked answered its liveness check with True."""
        return all(w.live for w in self.workers)

    def to_line(self) -> bytes:
        doc = {"workers": [w.as_dict() for w in self.workers], "running": self.running}
        return json.dumps(doc, separators=(",", ":")).encode() + b"\n"

    @classmethod
    def from_line(cls, line: bytes | str) -> ProcessReport:
        """Decode one line; ValueError when it is not a report (the pipe is ours alone)."""
        doc = json.loads(line)
        if not isinstance(doc, dict) or not isinstance(doc.get("workers"), list):
            raise ValueError("a report is an object with a list of workers")
        workers = []
        for item in doc["workers"]:
            state = item.get("state") if isinstance(item, dict) else None
            if state not in _REPORTED:
                raise ValueError(f"a worker report needs a state in {sorted(_REPORTED)}")
            reason = item.get("reason")
            workers.append(
                WorkerReport(
                    name=str(item["name"]),
                    capabilities=tuple(str(c) for c in item.get("capabilities", ())),
                    state=state,
                    live=bool(item.get("live", True)),
                    reason=None if reason is None else str(reason),
                )
            )
        running = doc.get("running", 0)
        if not isinstance(running, int) or isinstance(running, bool) or running < 0:
            raise ValueError("a report's running is a count of tasks")
        return cls(tuple(workers), running)


def with_overdue_tasks(report: ProcessReport, overdue: Sequence[tuple[str, str]]) -> ProcessReport:
    """``report`` with each worker of an overdue ``(capability, why)`` not live, its reason
    every ``why`` of its capabilities: a handler that ran far past its task's deadline
    holds its process (or its place there) as surely as a hang does."""
    if not overdue:
        return report
    workers = []
    for worker in report.workers:
        whys = [why for capability, why in overdue if capability in worker.capabilities]
        if whys:
            worker = replace(worker, live=False, reason="; ".join(whys))
        workers.append(worker)
    return ProcessReport(tuple(workers), report.running)


@dataclass(frozen=True)
class WorkerHealth:
    """One worker as the whole pool sees it."""

    name: str
    capabilities: tuple[str, ...]
    state: WorkerState
    reason: str | None = None
    #: live processes that report this worker ready.
    ready_processes: int = 0
    #: False when a process reports that the worker's liveness check fails.
    live: bool = True

    @property
    def serving(self) -> bool:
        return self.state == "ready"

    def problem(self) -> str | None:
        """A sentence for ``/ready`` and ``/v1/status``, None when the worker is ready."""
        if self.state == "failed":
            return f"worker {self.name!r} failed to load: {self.reason}"
        if self.state == "not_ready":
            return f"worker {self.name!r} is not ready: {self.reason}"
        if self.state == "starting":
            return f"worker {self.name!r} is starting: {self.reason or 'not loaded yet'}"
        return None

    def as_dict(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "reason": self.reason,
            "capabilities": list(self.capabilities),
            "ready_processes": self.ready_processes,
            "live": self.live,
        }


def fold_reports(
    expected: Mapping[str, Sequence[str]],
    reports: Sequence[ProcessReport],
    stale: Sequence[tuple[str, ProcessReport]] = (),
) -> dict[str, WorkerHealth]:
    """One :class:`WorkerHealth` per expected worker (name -> its capability ids).

    Ready when any process reports it ready (that process serves it); otherwise
    failed when a process could not load it, not ready when one says so, and
    starting while it is being loaded or no process has reported it yet.

    ``stale``: (process, its last report) of live processes that stopped reporting
    (hung): not counted, but named: a worker they host is not live, and not ready
    when no other process reports it.
    """
    health: dict[str, WorkerHealth] = {}
    for name, capabilities in sorted(expected.items()):
        silent = sorted(p for p, r in stale if any(w.name == name for w in r.workers))
        seen = [w for report in reports for w in report.workers if w.name == name]
        ready = [w for w in seen if w.state == "ready"]
        failed = [w for w in seen if w.state == "failed"]
        not_ready = [w for w in seen if w.state == "not_ready"]
        starting = [w for w in seen if w.state == "starting"]
        unlive = [w for w in seen if not w.live]
        state: WorkerState
        reason: str | None
        if ready:
            state, reason = "ready", None
        elif failed:
            state, reason = "failed", failed[0].reason
        elif not_ready:
            state, reason = "not_ready", not_ready[0].reason
        else:
            state = "starting"
            reason = starting[0].reason if starting else "no worker process has reported yet"
        if unlive and reason is None:
            reason = unlive[0].reason
        if silent:
            hung = f"worker process {', '.join(silent)} stopped reporting (hung, or too busy)"
            if not seen:
                state, reason = "not_ready", hung
            elif reason is None:
                reason = hung
        health[name] = WorkerHealth(
            name=name,
            capabilities=tuple(capabilities),
            state=state,
            reason=reason,
            ready_processes=len(ready),
            live=not unlive and not silent,
        )
    return health


class ReportWriter:
    """The child's end of the report pipe; a process started without one reports nowhere."""

    def __init__(self, fd: int | None) -> None:
        self.fd = fd
        self._lock = threading.Lock()  # two threads report: their lines must not interleave

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ReportWriter:
        raw = (os.environ if environ is None else environ).get(REPORT_FD_ENV, "")
        return cls(int(raw) if raw.strip().isdigit() else None)

    def write(self, report: ProcessReport) -> bool:
        """Send one report; False when nobody listens (no pipe, or the supervisor is gone)."""
        if self.fd is None:
            return False
        data = report.to_line()
        with self._lock:
            try:
                while data:  # a short write sends the rest
                    data = data[os.write(self.fd, data) :]
            except OSError:
                self.fd = None  # the supervisor is gone; the process stops on SIGTERM anyway
                return False
        return True


__all__ = [
    "PARENT_GONE_SIGNAL",
    "REPORT_FD_ENV",
    "ProcessReport",
    "ReportWriter",
    "ReportedState",
    "WorkerHealth",
    "WorkerReport",
    "WorkerState",
    "fold_reports",
    "with_overdue_tasks",
]
