"""The supervisor's view of its worker processes, shared with the HTTP processes.

With ``crank run --http-processes N`` (N > 1) the main process runs the supervisor
and N processes serve the port (docs/runtime.md). ``/ready``, ``/health``,
``/v1/status``, ``/metrics`` and the console must say the same whichever of them
answers, so the pool is not known from memory there: the supervisor's process
writes what it knows (the answers of :class:`~crank.runtime.status_tracker.PoolView`
and the HTTP processes' own count) to a small JSON file on every tick
(:class:`PoolPublisher`, replaced atomically), and each HTTP process reads it again
when it changed (:class:`SharedPoolView`). The queue, the budget and the metrics
files are read by each process itself, as they are shared already.

A file that was not rewritten for :data:`STALE_AFTER_S` means the supervisor
stopped (hung, or stopped by a debugger): the HTTP processes then say so on
``/ready`` and ``/health`` instead of repeating its last word.
"""

from __future__ import annotations

import json
import os
import threading
import time
from typing import TYPE_CHECKING, Any

from crank.runtime.worker_reports import WorkerHealth

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from crank.runtime.status_tracker import PoolView

#: a pool file older than this: the supervisor is not reporting.
STALE_AFTER_S = 10.0
#: an HTTP process looks at the file's modification time at most this often.
RECHECK_S = 0.1
_VERSION = 1


def _health_doc(worker: WorkerHealth) -> dict[str, Any]:
    return {
        "name": worker.name,
        "capabilities": list(worker.capabilities),
        "state": worker.state,
        "reason": worker.reason,
        "ready_processes": worker.ready_processes,
        "live": worker.live,
    }


def _health(doc: dict[str, Any]) -> WorkerHealth:
    return WorkerHealth(
        name=str(doc["name"]),
        capabilities=tuple(str(c) for c in doc["capabilities"]),
        state=doc["state"],
        reason=doc["reason"],
        ready_processes=int(doc["ready_processes"]),
        live=bool(doc["live"]),
    )


def pool_document(
    pool: PoolView,
    http: dict[str, int] | None = None,
    *,
    clock: Callable[[], float] = time.time,
) -> dict[str, Any]:
    """What the HTTP processes need to know of the pool, now."""
    total, healthy = pool.worker_counts()
    return {
        "version": _VERSION,
        "written_at": clock(),
        "total": total,
        "healthy": healthy,
        "workers": [_health_doc(w) for w in pool.worker_health().values()],
        "crashes": pool.crashes(),
        "stale": pool.stale_processes(),
        "replaced_unlive": pool.replaced_unlive(),
        "last_decision": pool.last_decision(),
        "http": http,
    }


def write_document(path: Path, doc: dict[str, Any]) -> None:
    """Replace ``path`` atomically: a reader sees the old file or the new one, whole."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(doc, separators=(",", ":"), default=str))
    tmp.replace(path)


class PoolPublisher:
    """Writes :func:`pool_document` to ``path`` every ``interval_s`` on a thread."""

    def __init__(
        self,
        pool: PoolView,
        path: Path,
        *,
        interval_s: float,
        http: Callable[[], dict[str, int]] | None = None,
        log: Any = None,
    ) -> None:
        self.pool = pool
        self.path = path
        self.interval_s = interval_s
        self.http = http
        self.log = log
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False

    def publish(self) -> None:
        try:
            write_document(self.path, pool_document(self.pool, self.http() if self.http else None))
        except Exception as exc:  # the next tick tries again; say so once
            if not self._failing and self.log is not None:
                self.log.error("pool_snapshot_failed", path=str(self.path), error=repr(exc))
            self._failing = True
        else:
            self._failing = False

    def start(self) -> None:
        self.publish()  # the HTTP processes find a file from their first request on
        self._thread = threading.Thread(target=self._run, name="crank-pool-file", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.publish()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval_s + 5)


class SharedPoolView:
    """:class:`~crank.runtime.status_tracker.PoolView` read from the supervisor's file."""

    def __init__(
        self,
        path: Path,
        *,
        stale_after_s: float = STALE_AFTER_S,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self.stale_after_s = stale_after_s
        self.clock = clock
        self.monotonic = monotonic
        self._doc: dict[str, Any] | None = None
        self._health: dict[str, WorkerHealth] = {}
        self._mtime_ns = -1
        self._checked_at = float("-inf")
        self._lock = threading.Lock()

    def _current(self) -> dict[str, Any] | None:
        now = self.monotonic()
        if now - self._checked_at < RECHECK_S:
            return self._doc
        with self._lock:
            self._checked_at = now
            try:
                mtime_ns = self.path.stat().st_mtime_ns
                if mtime_ns != self._mtime_ns:
                    doc = json.loads(self.path.read_text())
                    self._health = {w["name"]: _health(w) for w in doc["workers"]}
                    self._doc, self._mtime_ns = doc, mtime_ns
            except (OSError, ValueError, KeyError, TypeError):
                pass  # not written yet, or being replaced: the last whole one stands
            return self._doc

    def _fresh(self) -> dict[str, Any] | None:
        doc = self._current()
        if doc is None or self.clock() - float(doc["written_at"]) > self.stale_after_s:
            return None
        return doc

    def problem(self) -> str | None:
        """Why this view cannot be trusted, or None."""
        doc = self._current()
        if doc is None:
            return "the supervisor has not reported the worker processes yet"
        age = self.clock() - float(doc["written_at"])
        if age > self.stale_after_s:
            return f"the supervisor has not reported the worker processes for {age:.0f} s"
        return None

    def worker_counts(self) -> tuple[int, int]:
        doc = self._fresh()
        if doc is None:
            last = self._doc
            return (int(last["total"]) if last else 0), 0
        return int(doc["total"]), int(doc["healthy"])

    def last_decision(self) -> dict[str, Any] | None:
        doc = self._current()
        return None if doc is None else doc.get("last_decision")

    def worker_health(self) -> dict[str, WorkerHealth]:
        self._current()
        return dict(self._health)

    def crashes(self) -> int:
        doc = self._current()
        return 0 if doc is None else int(doc["crashes"])

    def stale_processes(self) -> list[str]:
        doc = self._current()
        return [] if doc is None else [str(c) for c in doc["stale"]]

    def replaced_unlive(self) -> int:
        doc = self._current()
        return 0 if doc is None else int(doc["replaced_unlive"])

    def http_processes(self) -> dict[str, int] | None:
        doc = self._current()
        return None if doc is None else doc.get("http")


__all__ = [
    "RECHECK_S",
    "STALE_AFTER_S",
    "PoolPublisher",
    "SharedPoolView",
    "pool_document",
    "write_document",
]
