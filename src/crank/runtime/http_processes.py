"""Several processes serving ``crank run``'s HTTP port (``--http-processes N``, N > 1).

One HTTP process answers a synchronous call with about 0.3 ms of CPU; on a machine
with more cores than that process can use, the port is served by N processes
instead, all accepting on the one socket ``crank run`` bound (the kernel hands each
new connection to one of them). The main process keeps the supervisor and its
worker processes, and starts, watches and stops the HTTP processes:

* each gets its plan (:class:`HttpProcessPlan`: the configuration, the manifests,
  where the shared state lives, the console's session key) over a pipe on its
  stdin, never on disk or in its environment, where the API token would show;
* one that exits without being asked to is started again, after 1 s, then up to
  :data:`MAX_RESTART_BACKOFF_S` while it keeps failing at once, and the restarts
  are counted (``/v1/status`` ``http_processes``);
* on SIGTERM they stop accepting and finish their requests (the grace period),
  then the worker processes stop; a process still busy after that is killed;
* when the main process dies (even ``kill -9``) the kernel sends each one
  ``PARENT_GONE_SIGNAL`` and it stops like on SIGTERM.

What every process must say alike is shared: the pool through the supervisor's
file (:mod:`crank.runtime.pool_snapshot`), the metrics through prometheus-client's
multiprocess files, concurrency slots through their lock files, and console
sessions through the one signing key. Per process: the in-flight bound
(``CRANK_MAX_INFLIGHT`` is divided between them) and the console's rate window.
"""

from __future__ import annotations

import math
import pickle
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from crank.runtime.supervisor import die_with_parent

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from pathlib import Path

    from crank.manifest import Manifest
    from crank.runtime.config import RuntimeConfig

#: the module each HTTP process runs (``python -m``).
HTTP_PROCESS_MODULE = "crank.runtime.http_process"
#: the longest wait before starting a process that keeps failing again.
MAX_RESTART_BACKOFF_S = 30.0
#: a process that served this long has its failures forgiven (the backoff restarts at 1 s).
STEADY_AFTER_S = 60.0


@dataclass(frozen=True)
class HttpProcessPlan:
    """What one HTTP process needs to serve like the others."""

    config: RuntimeConfig
    manifests: tuple[Manifest, ...]
    #: the listening socket's descriptor, inherited.
    fd: int
    #: the supervisor's pool file (:mod:`crank.runtime.pool_snapshot`).
    pool_file: Path
    metrics_dir: Path
    slots_dir: str
    limits: Mapping[str, int]
    #: the console's session key; None: derived from the API token.
    session_key: bytes | None = field(repr=False)
    #: 1..N, in every log line of the process (``http_process``).
    index: int = 0


def per_process_config(config: RuntimeConfig) -> RuntimeConfig:
    """The configuration one of ``config.http_processes`` processes serves with: the
    in-flight bound divided between them (rounded up), so the port's stays about the same."""
    share = math.ceil(config.max_inflight_requests / config.http_processes)
    return replace(config, max_inflight_requests=max(1, share))


@dataclass
class _Slot:
    index: int
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    #: when to start it again after it died; None while it runs (or before the start).
    due: float | None = None
    failures: int = 0


class HttpProcesses:
    """The HTTP processes of one ``crank run`` (see the module)."""

    def __init__(
        self,
        plan: HttpProcessPlan,
        count: int,
        *,
        env: Mapping[str, str],
        log: Any,
        command: Callable[[], list[str]] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.plan = plan
        self.env = dict(env)
        self.log = log
        self.command = command or (lambda: [sys.executable, "-m", HTTP_PROCESS_MODULE])
        self.clock = clock
        self.slots = [_Slot(i + 1) for i in range(count)]
        self.restarts = 0
        self.stopping = False

    def _spawn(self, slot: _Slot) -> None:
        proc = subprocess.Popen(
            self.command(),
            stdin=subprocess.PIPE,
            env=self.env,
            pass_fds=(self.plan.fd,),
            preexec_fn=die_with_parent(),
            # like the worker processes: Ctrl-C reaches crank run alone, which stops them once
            process_group=0,
        )
        assert proc.stdin is not None
        try:
            proc.stdin.write(pickle.dumps(replace(self.plan, index=slot.index)))
            proc.stdin.close()
        except BrokenPipeError:
            pass  # it died before reading its plan: check() sees it and says how
        slot.proc, slot.started_at, slot.due = proc, self.clock(), None
        self.log.info("http_process_started", http_process=slot.index, pid=proc.pid)

    def start(self) -> None:
        for slot in self.slots:
            self._spawn(slot)

    def check(self) -> None:
        """Start again each process that exited without being asked to, after its backoff."""
        if self.stopping:
            return
        now = self.clock()
        for slot in self.slots:
            proc = slot.proc
            if proc is not None and slot.due is None and proc.poll() is not None:
                if now - slot.started_at >= STEADY_AFTER_S:
                    slot.failures = 0
                backoff = min(MAX_RESTART_BACKOFF_S, 2.0**slot.failures)
                slot.failures += 1
                slot.due = now + backoff
                self.log.error(
                    "http_process_died",
                    http_process=slot.index,
                    pid=proc.pid,
                    exit_code=proc.returncode,
                    restart_in_s=backoff,
                )
            if slot.due is not None and now >= slot.due:
                try:
                    self._spawn(slot)
                    self.restarts += 1
                except OSError as exc:  # no fork, no memory: try again after the backoff
                    slot.failures += 1
                    slot.due = now + min(MAX_RESTART_BACKOFF_S, 2.0**slot.failures)
                    self.log.error(
                        "http_process_start_failed", http_process=slot.index, error=repr(exc)
                    )

    def report(self) -> dict[str, int]:
        """``http_processes`` of ``/v1/status``: configured, alive, restarts."""
        alive = sum(1 for s in self.slots if s.proc is not None and s.proc.poll() is None)
        return {"configured": len(self.slots), "alive": alive, "restarts": self.restarts}

    def pids(self) -> list[int]:
        return [s.proc.pid for s in self.slots if s.proc is not None and s.proc.poll() is None]

    def signal_all(self, sig: signal.Signals = signal.SIGTERM) -> None:
        for slot in self.slots:
            if slot.proc is not None and slot.proc.poll() is None:
                slot.proc.send_signal(sig)

    def stop(self, grace_s: float) -> None:
        """SIGTERM each; they finish their requests within ``grace_s``; then kill the rest."""
        self.stopping = True
        self.signal_all(signal.SIGTERM)
        deadline = self.clock() + grace_s + 5.0
        for slot in self.slots:
            if slot.proc is None:
                continue
            try:
                slot.proc.wait(timeout=max(0.0, deadline - self.clock()))
            except subprocess.TimeoutExpired:
                self.log.warning("http_process_killed_after_grace", http_process=slot.index)
                slot.proc.kill()
                slot.proc.wait()
        self.log.info("http_processes_stopped", processes=len(self.slots))


__all__ = [
    "HTTP_PROCESS_MODULE",
    "MAX_RESTART_BACKOFF_S",
    "HttpProcessPlan",
    "HttpProcesses",
    "per_process_config",
]
