"""The workers one worker process hosts: the ones that load serve, the others are reported.

:class:`HostedWorkers` reads every manifest first (a bad manifest or a capability
declared twice is a usage error: nothing could be served correctly), then loads
each worker on its own: import, handler check, ``setup()``. A worker that fails
there is kept with its reason instead of taking the process down, so one broken
worker never stops the others. :meth:`HostedWorkers.check` runs the loaded
workers' ``check_readiness()`` and ``check_liveness()`` and returns what the
process reports to the supervisor (:mod:`crank.runtime.worker_reports`);
:meth:`HostedWorkers.serving` is what the process claims tasks for: the
capabilities of the workers that are ready.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from crank.errors import CrankError, UsageError
from crank.manifest.reading import load_servable_manifest
from crank.runtime.task_services import RUNTIME_TASK_SERVICES
from crank.runtime.worker_reports import ProcessReport, ReportedState, WorkerReport
from crank.worker.host import WorkerHost

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from crank.manifest import Capability, Manifest

log = logging.getLogger("crank.runtime.worker")


@dataclass(frozen=True)
class CapabilityBinding:
    """A capability this process serves, bound to the WorkerHost of the manifest declaring it."""

    host: WorkerHost
    capability: Capability


def describe(exc: BaseException) -> str:
    """A one-line reason: crank's own message, else the exception's type and text."""
    if isinstance(exc, CrankError):
        return exc.message
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class HostedWorker:
    """One worker of the process: its manifest, its host once loaded, its latest state."""

    def __init__(self, manifest: Manifest, host: WorkerHost | None = None) -> None:
        self.manifest = manifest
        self.host = host
        #: imported and set up: its hooks may run and its capabilities may be served.
        self.loaded = False
        self.state: ReportedState = "starting"
        self.reason: str | None = "being loaded" if host is None else "setup() has not run"
        self.live = True

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def capabilities(self) -> tuple[str, ...]:
        return tuple(self.manifest.capability_ids)

    def report(self) -> WorkerReport:
        return WorkerReport(self.name, self.capabilities, self.state, self.live, self.reason)


def _answer(check: Callable[[], bool], hook: str) -> str | None:
    """None when the hook answers True; else why not (False, or what it raised)."""
    try:
        ok = check()
    except Exception as exc:
        return f"{hook}() raised {describe(exc)}"
    return None if ok else f"{hook}() returned False"


class HostedWorkers:
    """Every worker one process was given (see the module docstring)."""

    def __init__(self, workers: Sequence[HostedWorker]) -> None:
        self.workers = list(workers)
        owners: dict[str, str] = {}
        for worker in self.workers:
            for cap in worker.capabilities:
                if cap in owners:
                    raise UsageError(
                        f"capability {cap!r} is declared by {owners[cap]} and by "
                        f"{worker.manifest.path or worker.name}",
                        hint="serve each capability from one worker package only",
                        subject=cap,
                    )
                owners[cap] = str(worker.manifest.path or worker.name)
        self._lock = threading.Lock()
        self._bindings: dict[str, CapabilityBinding] = {}
        self._serving: tuple[str, ...] = ()
        for worker in self.workers:
            if worker.host is not None:  # handed over loaded: load() sets it up
                self._bind(worker)

    @classmethod
    def from_paths(cls, manifest_paths: Sequence[str]) -> HostedWorkers:
        """Read the manifests (nothing is imported yet); refuse one that cannot be served."""
        if not manifest_paths:
            raise UsageError(
                "a worker process needs at least one manifest",
                hint="pass --manifest path/to/crank.yaml (one per worker package)",
            )
        return cls([HostedWorker(load_servable_manifest(path)) for path in manifest_paths])

    @classmethod
    def from_bindings(cls, bindings: Mapping[str, CapabilityBinding]) -> HostedWorkers:
        """Workers already loaded (tests, embedding): each host once."""
        hosts = {id(b.host): b.host for b in bindings.values()}
        return cls([HostedWorker(host.manifest, host) for host in hosts.values()])

    # -- what the loop reads -----------------------------------------------------------

    @property
    def declared(self) -> tuple[str, ...]:
        """Every capability of every manifest, loaded or not."""
        return tuple(cap for w in self.workers for cap in w.capabilities)

    @property
    def bindings(self) -> dict[str, CapabilityBinding]:
        """capability id -> binding, for the workers that loaded."""
        return self._bindings

    def serving(self) -> tuple[str, ...]:
        """The capabilities of the workers that are ready now."""
        return self._serving

    def hosts(self) -> list[WorkerHost]:
        return [w.host for w in self.workers if w.host is not None]

    # -- loading -----------------------------------------------------------------------

    def _bind(self, worker: HostedWorker) -> None:
        assert worker.host is not None
        bindings = dict(self._bindings)
        for cap in worker.manifest.capabilities:
            bindings[cap.id] = CapabilityBinding(worker.host, cap)
        self._bindings = bindings  # swapped whole: the loop reads it without the lock

    def load(self) -> None:
        """Import, check and set up each worker; a failure is recorded, never raised."""
        for worker in self.workers:
            if worker.host is None:
                try:
                    host = WorkerHost(worker.manifest, services=RUNTIME_TASK_SERVICES)
                except Exception as exc:
                    self._failed(worker, describe(exc))
                    continue
                with self._lock:
                    worker.host, worker.reason = host, "setup() is running"
            try:
                worker.host.start()
            except Exception as exc:
                self._failed(worker, f"setup() raised {describe(exc)}")
                with contextlib.suppress(Exception):
                    worker.host.stop()  # close the event loops setup may have opened
                worker.host = None
                self._bindings = {
                    cap: b for cap, b in self._bindings.items() if cap not in worker.capabilities
                }
                continue
            self._bind(worker)
            worker.loaded = True
            self.check([worker])

    def _failed(self, worker: HostedWorker, reason: str) -> None:
        # crank's loading errors start by naming the worker; every report names it already
        reason = reason.removeprefix(f"worker {worker.name!r}: ")
        with self._lock:
            worker.state, worker.reason, worker.live = "failed", reason, True
        log.error("worker %s failed to load: %s", worker.name, reason)

    def check(self, workers: Sequence[HostedWorker] | None = None) -> ProcessReport:
        """Run the readiness and liveness hooks of loaded workers; the process's report."""
        for worker in self.workers if workers is None else workers:
            host = worker.host
            if host is None or not worker.loaded:
                continue
            not_ready = _answer(host.ready, "check_readiness")
            not_live = _answer(host.live, "check_liveness")
            with self._lock:
                worker.state = "ready" if not_ready is None else "not_ready"
                worker.reason = not_ready or not_live
                worker.live = not_live is None
        with self._lock:
            self._serving = tuple(
                cap for w in self.workers if w.state == "ready" for cap in w.capabilities
            )
            return ProcessReport(tuple(w.report() for w in self.workers))

    def report(self) -> ProcessReport:
        """The current state without running any hook."""
        with self._lock:
            return ProcessReport(tuple(w.report() for w in self.workers))

    def stop(self) -> None:
        """``teardown()`` of every loaded worker; one that raises does not stop the others."""
        for host in self.hosts():
            try:
                host.stop()
            except Exception:
                log.exception("teardown of worker %s failed", host.manifest.name)


__all__ = ["CapabilityBinding", "HostedWorker", "HostedWorkers", "describe"]
