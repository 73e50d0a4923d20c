"""One worker process: claim a batch, run each task through its WorkerHost, ack.

The supervisor starts these as child processes
(``python -m crank.runtime.worker_process --broker URL --manifest PATH ...``)
and calls ``broker.recover(consumer)`` when one dies. Guarantees:

* a claimed task is acked, failed or released; a failure is ``failed`` when the
  caller's input was at fault (refused by the schema, a declared non-retryable
  error), else retried or a dead letter (crash, undeclared error, attempts
  exhausted); if the process dies first, the visibility timeout (or the
  supervisor's ``recover``) brings it back: nothing is lost, a task may run twice;
* a heartbeat thread extends the visibility of every held task until the task's
  own deadline (the capability's ``timeout_s``), so long tasks are not
  redelivered while they run and hung ones are;
* SIGTERM/SIGINT: stop claiming, give the unstarted part of the batch back,
  finish the running task within ``grace_s`` (past it, or on a second signal:
  release it and exit 1; a task whose handler runs past its deadline then is failed
  as ``TIMEOUT`` instead, its attempt counted, so it cannot come back for ever);
  SIGHUP, which the kernel sends when the supervisor dies
  (and may send more than once), is that stop however often it comes, and never the
  first of two; one that comes while the supervisor runs (the kernel sends it when
  the supervisor's thread that started this process ends) is no stop at all;
* a result waits for the rest of its batch about ``ack_flush_s``: it is acked once
  it waited that long, or before a task expected to keep it waiting longer (of a
  capability that is slow, or not run here yet) starts, or by the heartbeat's thread
  when a task expected to be quick runs ``EARLY_ACK_AFTER_S`` or more;
* broker down: every broker call is retried with exponential backoff and
  jitter (tenacity) until it answers; results already computed are kept and
  acked once it is back;
* a claim asks for as many tasks as recent ones ran in ``batch_target_s``
  (1 to ``batch_size``), learned per capability (one never run yet: 1), so slow
  tasks spread over workers: what a claim brings of a capability beyond its own
  size goes back to the queue at once (a claim cannot say how many of each it
  wants);
* full batches expected to be fast (quicker than ``prefetch_below_s`` by their
  capabilities' recent times) overlap with the broker: the ack of the last batch
  and the claim of the next are sent before the batch runs and read after it
  (``Broker.begin_ack_and_claim``);
* a task that runs past a heartbeat does not keep others waiting behind it: the
  heartbeat acks the results finished before it, and gives the unstarted tasks of
  its batch, and a prefetched batch, back to the queue, where an idle process takes
  them; SIGTERM gives them back unrun;
* one broken worker never takes the others down: a worker that fails to import
  or to set up is reported and the process serves the rest
  (:mod:`crank.runtime.hosted_workers`); every ``health_interval_s`` a health
  thread runs the workers' readiness and liveness checks, reports them to the
  supervisor (:mod:`crank.runtime.worker_reports`) and the loop claims tasks only
  for the workers that are ready;
* streaming capabilities: each event the handler emits is published to the
  broker at once (``publish_events``), before the task is acked, so the HTTP
  server can forward it while the handler still runs. Other tasks publish
  nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import logging
import math
import os
import signal
import socket
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, TypeVar

from tenacity import Retrying, retry_if_exception_type, wait_exponential, wait_random

from crank.errors import BrokerError, CrankError, ExitCode, UsageError, ValidationFailed
from crank.manifest.reading import load_servable_manifest
from crank.plugins import PluginLoadWarning, build_plugin_manager
from crank.runtime import run_dir
from crank.runtime.brokers import open_broker
from crank.runtime.brokers.contract import ClaimOptions
from crank.runtime.concurrency import (
    SLOTS_DIR_ENV,
    ConcurrencySlots,
    Slot,
    concurrency_limits,
)
from crank.runtime.hosted_workers import CapabilityBinding, HostedWorkers
from crank.runtime.logs import configure_logging
from crank.runtime.task_metrics import TaskMetricsPlugin, observe_ended_unrun
from crank.runtime.task_services import RUNTIME_TASK_SERVICES
from crank.runtime.tracing import configure_tracing, record_outcome, task_trace
from crank.runtime.worker_reports import PARENT_GONE_SIGNAL, ReportWriter, with_overdue_tasks
from crank.worker.context import TaskCancelled, TaskContext
from crank.worker.errors import CapabilityError
from crank.worker.host import OutputInvalid, WorkerHost

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping, Sequence
    from types import FrameType

    from crank.runtime.brokers.contract import Broker, Claim, PendingClaims, TaskRecord

T = TypeVar("T")
log = logging.getLogger("crank.runtime.worker")

#: exit status when the running task did not finish within the grace period.
EXIT_GRACE_EXCEEDED = 1
#: how long giving back the held tasks may take on a stop that cannot wait (a broker
#: that does not answer); the process exits then regardless.
STOP_NOW_LIMIT_S = 15.0
#: how long a capability found at its max_concurrency is left out of claims.
FULL_RECHECK_S = 0.05
#: a task expected to be quick that has run this long: the results finished before it
#: are acked by the heartbeat's thread, which looks this often (a heartbeat is seconds).
EARLY_ACK_AFTER_S = 0.2


@dataclass(frozen=True)
class WorkerProcessConfig:
    """Everything one worker process needs; the supervisor builds one per child."""

    broker_url: str
    manifest_paths: tuple[str, ...]
    consumer: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    #: capability ids to serve; None = every capability of the manifests.
    capabilities: tuple[str, ...] | None = None
    batch_size: int = 32
    visibility_timeout_s: float = 30.0
    grace_s: float = 10.0
    #: how often held tasks are extended; None = a third of the visibility timeout.
    heartbeat_s: float | None = None
    #: how long one claim waits for work before the loop looks at signals again.
    block_s: float = 1.0
    #: longest pause between reconnection attempts when the broker is down.
    reconnect_max_s: float = 5.0
    #: flush acks of a batch once the oldest result waited this long.
    ack_flush_s: float = 0.05
    #: claim about this much work at a time: as many tasks as the recent ones ran in
    #: this long (at least 1, at most ``batch_size``), so slow tasks are not hoarded
    #: by one process while others idle, and fast ones still come in full batches.
    batch_target_s: float = 0.05
    #: claim the next batch while this one runs when the last batch took less than
    #: this; slower batches do not need it (a round trip is small next to them) and
    #: would only keep tasks from idle workers.
    prefetch_below_s: float = 0.1
    #: how often the workers' readiness and liveness checks run and are reported.
    health_interval_s: float = 2.0

    @property
    def heartbeat_interval_s(self) -> float:
        if self.heartbeat_s is not None:
            return self.heartbeat_s
        return max(0.05, self.visibility_timeout_s / 3.0)


@dataclass(frozen=True)
class Outcome:
    """What running one task came to: a result, or an error dict and whether to retry.

    ``client_fault``: the caller's input was refused (schema, or a declared
    non-retryable error): the task ends ``failed``, not as a dead letter.
    """

    result: Any = None
    error: dict[str, Any] | None = None
    retryable: bool = False
    client_fault: bool = False


#: what a handler that runs on far past its deadline should do instead.
_HEED_CANCEL = (
    "a synchronous handler must look: ctx.check_cancelled(); an async one must not block "
    "its event loop nor swallow asyncio.CancelledError"
)


@dataclass(frozen=True)
class HandlerCall:
    """One handler call running now, off the one-task-at-a-time path: a batch handler's
    call, or an async handler's task on the task loop (see :meth:`WorkerLoop._overdue`)."""

    capability: str
    task_ids: tuple[str, ...]
    #: the latest of its tasks' deadlines (a :func:`time.monotonic` value; a batch is
    #: cancelled once every item's passed); None when a task has none.
    deadline: float | None
    batch: bool = False

    def overdue(self, late_s: float) -> str:
        """Why the worker is not live, this call having run ``late_s`` past its deadline."""
        if not self.batch:
            return (
                f"the handler of task {self.task_ids[0]} ({self.capability}) has run "
                f"{late_s:.0f} s past the task's deadline: it does not stop when its task "
                f"is cancelled ({_HEED_CANCEL})"
            )
        shown = ", ".join(self.task_ids[:3])
        if len(self.task_ids) > 3:
            shown += f" and {len(self.task_ids) - 3} more"
        return (
            f"the batch handler of {self.capability} (tasks {shown}) has run {late_s:.0f} s "
            f"past its tasks' deadlines: it does not stop when they are cancelled "
            f"({_HEED_CANCEL})"
        )


def load_bindings(manifest_paths: Sequence[str]) -> dict[str, CapabilityBinding]:
    """capability id -> the WorkerHost of the manifest declaring it."""
    if not manifest_paths:
        raise UsageError(
            "a worker process needs at least one manifest",
            hint="pass --manifest path/to/crank.yaml (one per worker package)",
        )
    bindings: dict[str, CapabilityBinding] = {}
    for path in manifest_paths:
        manifest = load_servable_manifest(path)
        host = WorkerHost(manifest, services=RUNTIME_TASK_SERVICES)
        for cap in manifest.capabilities:
            if cap.id in bindings:
                raise UsageError(
                    f"capability {cap.id!r} is declared by {bindings[cap.id].host.manifest.path} "
                    f"and by {path}",
                    hint="serve each capability from one worker package only",
                    subject=cap.id,
                )
            bindings[cap.id] = CapabilityBinding(host, cap)
    return bindings


def task_context(claim: Claim, deadline: float | None) -> TaskContext:
    """The context a claimed task runs with (``deadline``: a :func:`time.monotonic` value)."""
    task = claim.task
    return TaskContext(
        capability=task.capability,
        task_id=task.id,
        attempt=claim.attempt,
        max_attempts=task.max_attempts,
        deadline=deadline,
        extras=dict(task.meta),
        services=RUNTIME_TASK_SERVICES,
    )


def run_task(
    binding: CapabilityBinding,
    claim: Claim,
    event_sink: Callable[[Mapping[str, Any]], None] | None = None,
    deadline: float | None = None,
    on_context: Callable[[TaskContext], None] | None = None,
) -> Outcome:
    """Run one claimed task; every exception becomes an error dict, none escapes.

    ``event_sink`` receives each event a streaming handler emits, as it emits it.
    ``deadline`` (a :func:`time.monotonic` value) defaults to the task's timeout
    (or the capability's) from now. ``on_context`` gets the task's context before the
    handler starts (the worker loop cancels it from there when the task is cancelled).
    The task runs in its span, continuing the trace of the request that submitted it,
    with its ids on every log line.
    """
    task = claim.task
    with task_trace(task.id, task.capability, task.meta) as current:
        outcome = _run_task(binding, claim, event_sink, deadline, on_context)
        record_outcome(current, outcome.error)
        return outcome


def _run_task(
    binding: CapabilityBinding,
    claim: Claim,
    event_sink: Callable[[Mapping[str, Any]], None] | None,
    deadline: float | None,
    on_context: Callable[[TaskContext], None] | None,
) -> Outcome:
    task = claim.task
    if deadline is None:
        timeout = task.timeout_s or binding.capability.timeout_s
        deadline = time.monotonic() + timeout if timeout else None
    ctx = task_context(claim, deadline)
    if event_sink is not None:
        ctx.event_sink = event_sink
    if on_context is not None:
        on_context(ctx)
    try:
        return Outcome(result=binding.host.call(task.capability, task.payload, ctx))
    except (Exception, SystemExit) as exc:  # sys.exit() in a handler fails its task alone
        return outcome_of_error(exc, task, ctx)


def asked_to_stop(ctx: TaskContext | None) -> bool:
    """Whether the task was cancelled (``ctx.cancel()``) before its deadline passed."""
    if ctx is None or not ctx.cancelled:
        return False
    return ctx.deadline is None or time.monotonic() < ctx.deadline


def outcome_of_error(
    exc: Exception | SystemExit, task: TaskRecord, ctx: TaskContext | None = None
) -> Outcome:
    """What an exception that failed ``task`` comes to (a raised one, or one a batch
    handler answered for this task's item). ``ctx``: the task's context, which tells
    a task cancelled by an operator (``CANCELLED``) from one out of time (``TIMEOUT``).
    A handler's ``sys.exit()`` fails its task as a crash (``INTERNAL``), never ends its
    worker process: that would fail every task the process holds, again at each retry."""
    if isinstance(exc, SystemExit):
        log.error("task %s (%s) called sys.exit()", task.id, task.capability, exc_info=exc)
        message = (
            f"the handler called sys.exit({exc.code!r}): a handler fails its task by "
            "raising an error, and the worker process goes on"
        )
        return Outcome(error={"code": "INTERNAL", "message": message, "type": "SystemExit"})
    if isinstance(exc, CapabilityError):
        error: dict[str, Any] = {
            "code": exc.code,
            "message": exc.message,
            "type": type(exc).__name__,
        }
        if exc.details:
            error["details"] = exc.details
        retryable = bool(exc.retryable)
        # an undeclared code is the worker's bug, not the caller's fault
        declared = not exc.details.get("undeclared_code")
        return Outcome(error=error, retryable=retryable, client_fault=declared and not retryable)
    if isinstance(exc, OutputInvalid):
        error = {"code": "OUTPUT_INVALID", "message": exc.message, "type": type(exc).__name__}
        return Outcome(error={**error, "errors": exc.errors})
    if isinstance(exc, ValidationFailed):
        error = {"code": "INVALID_INPUT", "message": exc.message, "type": type(exc).__name__}
        return Outcome(error={**error, "errors": exc.errors}, client_fault=True)
    if isinstance(exc, TaskCancelled):
        if asked_to_stop(ctx):  # the broker ends it cancelled: never retried
            message = f"task {task.id} ({task.capability}) was cancelled while it ran"
            return Outcome(error={"code": "CANCELLED", "message": message, "type": "TaskCancelled"})
        error = {"code": "TIMEOUT", "message": exc.message, "type": type(exc).__name__}
        return Outcome(error=error, retryable=True)
    log.error("task %s (%s) raised", task.id, task.capability, exc_info=exc)
    error = {"code": "INTERNAL", "message": str(exc) or repr(exc), "type": type(exc).__name__}
    return Outcome(error=error)


class Prefetch:
    """The next batch, claimed while this one runs (:meth:`Broker.begin_ack_and_claim`).

    Its answer is read once, by whichever thread gets there first: the loop when
    the batch is done, or the heartbeat (so prefetched tasks are held, and kept
    invisible, while a batch runs long), or the grace timer (to give them back).
    The heartbeat may also take the claims to give them back (:meth:`take`): the
    loop then finds none.
    """

    def __init__(
        self,
        pending: PendingClaims,
        acked: list[tuple[Claim, Any]],
        hold: Callable[[Sequence[Claim]], None],
    ) -> None:
        self.acked = acked
        self._pending = pending
        self._hold = hold
        self._lock = threading.Lock()
        self._claims: list[Claim] | None = None
        self._error: BrokerError | None = None
        self._taken = False  # handed to the loop or to the heartbeat (take)

    def collect(self) -> list[Claim]:
        with self._lock:
            if self._claims is None and self._error is None:
                try:
                    self._claims = self._pending.result()
                except BrokerError as exc:
                    self._error = exc
                else:
                    self._hold(self._claims)
            if self._error is not None:
                raise self._error
            assert self._claims is not None
            return self._claims

    def take(self) -> list[Claim]:
        """The claims, once: to whichever asks first of the loop (to run them) and the
        heartbeat (to give them back); the other gets none."""
        claims = self.collect()
        with self._lock:
            if self._taken:
                return []
            self._taken = True
            return claims


class WorkerLoop:
    """The claim → run → ack loop of one process (see the module docstring)."""

    def __init__(
        self,
        config: WorkerProcessConfig,
        *,
        bindings: dict[str, CapabilityBinding] | None = None,
        workers: HostedWorkers | None = None,
        broker: Broker | None = None,
        on_finished: Callable[[str, str, float], None] | None = None,
        hard_exit: Callable[[int], Any] = os._exit,
        reports: ReportWriter | None = None,
        slots: ConcurrencySlots | None = None,
    ) -> None:
        self.config = config
        self._hard_exit = hard_exit
        # manifests are read here; the workers are imported and set up when run() starts
        if workers is None:
            workers = (
                HostedWorkers.from_bindings(bindings)
                if bindings is not None
                else HostedWorkers.from_paths(config.manifest_paths)
            )
        self.workers = workers
        declared = self.workers.declared
        caps = config.capabilities
        if caps is not None:
            unknown = sorted(set(caps) - set(declared))
            if unknown:
                raise UsageError(
                    f"capabilities not declared by the given manifests: {', '.join(unknown)}",
                    hint=f"serve some of: {', '.join(sorted(declared))}",
                    subject=unknown[0],
                )
        self.capabilities: tuple[str, ...] = caps if caps is not None else declared
        self._reports = reports if reports is not None else ReportWriter.from_env()
        self._health_stop = threading.Event()
        self._serving_seen: tuple[str, ...] | None = None
        self._claimable_now: tuple[str, ...] = ()
        #: max_concurrency slots shared with the other processes (None: no limits here).
        self._slots = slots
        self._limited = frozenset(slots.limits) if slots is not None else frozenset()
        #: capabilities found at their limit, left out of claims until then.
        self._full_until: dict[str, float] = {}
        self._claim_base = ClaimOptions(
            config.consumer,
            capabilities=self.capabilities,
            visibility_timeout_s=config.visibility_timeout_s,
        )
        self.stop_event = threading.Event()
        self._broker = broker
        self._on_finished = on_finished
        self._held: dict[str, tuple[Claim, float | None]] = {}
        #: tasks asked to stop (``Broker.cancel``) and the contexts of running tasks,
        #: both under ``_held_lock``: a task in ``_cancels`` never starts, and one that
        #: runs has its context cancelled (see :meth:`_on_cancel`).
        self._cancels: set[str] = set()
        self._contexts: dict[str, TaskContext] = {}
        self._held_lock = threading.Lock()
        self._stop_deadline: float | None = None
        #: a stop signal (SIGTERM/SIGINT) came: the next one stops at once. A stop
        #: without one (the supervisor gone, a caller) never counts as the first.
        self._signalled = False
        #: a stop was asked (set first thing, before any I/O: a second signal whose
        #: handler runs inside the first one's, between two of its bytecodes, must see it).
        self._stop_begun = False
        #: the supervisor's death was told (see _on_parent_gone; set the same way).
        self._parent_gone = False
        #: the process that started this one: a parent-death signal while it still runs
        #: came from the exit of its thread that started this process, not of the parent.
        self._parent = os.getppid()
        self._grace_timer: threading.Timer | None = None
        #: the batch _run_batch runs, and the index of the task it is at (started, or
        #: about to look at the stop before it starts): at a stop, the ones after it
        #: are given back at once (see request_stop).
        self._batch: Sequence[Claim] = ()
        self._at = 0
        self._stop_now_lock = threading.Lock()
        self._stopping_now = False
        self._heartbeat_stop = threading.Event()
        self._prefetch: Prefetch | None = None
        #: seconds per task lately, per capability (absent until one ran here), and the
        #: last claim's limit.
        self._task_s: dict[str, float] = {}
        self._limit = 1
        #: the task running now and since when (monotonic); the heartbeat's "past a beat".
        self._running: tuple[str, float] | None = None
        #: the handler calls running off that path (batches, the task loop), under
        #: ``_held_lock``: the health thread looks at them too (see _overdue).
        self._calls: dict[int, HandlerCall] = {}
        self._call_ids = itertools.count()
        #: the results not acked yet: of the batch that runs (_run_batch's list) and of
        #: the one before it (the loop's, acked with the next claim).
        self._results: list[tuple[Claim, Any]] = []
        self._carried: list[tuple[Claim, Any]] = []
        self.processed = 0

    @property
    def bindings(self) -> dict[str, CapabilityBinding]:
        """capability id -> binding, of the workers that loaded."""
        return self.workers.bindings

    def _claimable(self) -> tuple[str, ...]:
        """The configured capabilities whose worker is ready now (recomputed on a change)."""
        serving = self.workers.serving()
        if serving is not self._serving_seen:
            ready = set(serving)
            self._serving_seen = serving
            self._claimable_now = tuple(c for c in self.capabilities if c in ready)
        return self._claimable_now

    # -- health --------------------------------------------------------------------------

    def _health(self) -> None:
        """Report at once (the workers are starting), then check and report every interval."""
        self._reports.write(self.workers.report())
        while not self._health_stop.wait(self.config.health_interval_s):
            report = with_overdue_tasks(self.workers.check(), self._overdue())
            with self._held_lock:
                running = len(self._contexts)  # the tasks whose handler runs now
            self._reports.write(replace(report, running=running))

    def _overdue(self) -> list[tuple[str, str]]:
        """(capability, why) of each handler that runs on more than a visibility timeout
        past its task's deadline (the task has been delivered again by then: nobody waits
        for this run, and the process, or that place in it, can take nothing else): the
        task run one at a time, and every batch or task-loop call (:meth:`_calling`)."""
        with self._held_lock:
            running = self._running
            held = self._held.get(running[0]) if running is not None else None
            calls = list(self._calls.values())
        if held is not None:
            claim, deadline = held
            calls.insert(0, HandlerCall(claim.task.capability, (claim.task.id,), deadline))
        now, vt = time.monotonic(), self.config.visibility_timeout_s
        return [
            (call.capability, call.overdue(now - call.deadline))
            for call in calls
            if call.deadline is not None and now - call.deadline > vt
        ]

    @contextlib.contextmanager
    def _calling(
        self,
        capability: str,
        claims: Sequence[Claim],
        deadlines: Sequence[float | None],
        *,
        batch: bool,
    ) -> Iterator[None]:
        """While a handler runs for ``claims`` off the one-at-a-time path: looked at by
        :meth:`_overdue`."""
        deadline = None if None in deadlines else max(d for d in deadlines if d is not None)
        call = HandlerCall(capability, tuple(c.task.id for c in claims), deadline, batch)
        with self._held_lock:
            key = next(self._call_ids)
            self._calls[key] = call
        try:
            yield
        finally:
            with self._held_lock:
                del self._calls[key]

    # -- broker access with reconnection ---------------------------------------------

    @property
    def broker(self) -> Broker:
        if self._broker is None:
            self._broker = self._with_retry(
                "connect to the broker", self._open, give_up=self._stopping
            )
        return self._broker

    def _open(self) -> Broker:
        return open_broker(self.config.broker_url)

    def _stopping(self) -> bool:
        return self.stop_event.is_set()

    def _past_grace(self) -> bool:
        return self._stop_deadline is not None and time.monotonic() > self._stop_deadline

    def _with_retry(self, what: str, call: Callable[[], T], *, give_up: Callable[[], bool]) -> T:
        """Retry ``call`` on BrokerError with exponential backoff and jitter.

        The first try is a plain call: building tenacity's machinery for every claim
        and ack cost a worker about a tenth of its time per task. A failure is handed
        to it as its first attempt, so what follows is as if it had made that call.
        """
        try:
            return call()
        except BrokerError as exc:
            failed: BrokerError | None = exc

        def attempt() -> T:
            nonlocal failed
            if failed is not None:
                exc, failed = failed, None
                raise exc
            return call()

        def stop(state: Any) -> bool:
            return give_up()

        def before_sleep(state: Any) -> None:
            exc = state.outcome.exception() if state.outcome else None
            log.warning(
                "broker unavailable, retrying (%s, attempt %d): %s",
                what,
                state.attempt_number,
                getattr(exc, "message", exc),
            )

        retrying = Retrying(
            retry=retry_if_exception_type(BrokerError),
            wait=wait_exponential(multiplier=0.05, max=self.config.reconnect_max_s)
            + wait_random(0, 0.1),
            stop=stop,
            before_sleep=before_sleep,
            reraise=True,
        )
        down_since = time.monotonic()
        answered = retrying(attempt)
        # an outage logged each retry: say when it is over too
        log.warning(
            "broker available again (%s, after %d attempts, %.1f s)",
            what,
            retrying.statistics.get("attempt_number", 0),
            time.monotonic() - down_since,
        )
        return answered

    # -- held claims and the heartbeat -------------------------------------------------

    def _hold(self, claims: Sequence[Claim]) -> None:
        with self._held_lock:
            for claim in claims:
                self._held[claim.task.id] = (claim, None)
        # what the claim ended without a handler (a task whose workers kept dying, or
        # cancelled while a dead worker held it): nobody else counts it
        for capability, status in self.broker.ended_by_claims():
            observe_ended_unrun(capability, status)

    def _hold_until(self, claim: Claim, deadline: float | None) -> None:
        """Keep ``claim`` invisible to others until ``deadline`` (its task started)."""
        with self._held_lock:
            self._held[claim.task.id] = (claim, deadline)

    def _started(self, claim: Claim, started: float, deadline: float | None) -> bool:
        """Mark ``claim`` running; False: the heartbeat gave it back first, do not run it."""
        task_id = claim.task.id
        with self._held_lock:
            if task_id not in self._held:
                return False
            self._held[task_id] = (claim, deadline)
            self._running = (task_id, started)
            return True

    def _holds(self, claim: Claim) -> bool:
        with self._held_lock:
            return claim.task.id in self._held

    def _drop(self, claims: Sequence[Claim]) -> None:
        with self._held_lock:
            for claim in claims:
                self._held.pop(claim.task.id, None)
                self._cancels.discard(claim.task.id)

    # -- cancelled tasks ---------------------------------------------------------------

    def _listen_for_cancels(self, broker: Broker) -> Callable[[], None]:
        """Be told when a task this process holds is cancelled; without the notices
        (the broker would not subscribe) the heartbeat still asks now and then."""
        try:
            return broker.listen_for_cancels(self.config.consumer, self._on_cancel)
        except BrokerError as exc:
            log.warning("not told of cancelled tasks until the next heartbeat: %s", exc.message)
            return lambda: None

    def _on_cancel(self, task_id: str) -> None:
        """A task this process holds (or is about to: a claim on its way) was cancelled:
        it does not start, or its handler is told (``ctx.cancelled``)."""
        with self._held_lock:
            self._cancels.add(task_id)
            ctx = self._contexts.get(task_id)
        if ctx is not None:
            ctx.cancel()
            log.info("task %s was cancelled while it ran: its handler is told", task_id)

    def _track(self, ctx: TaskContext) -> None:
        """The context of the task about to run (cancelled at once if it was asked)."""
        with self._held_lock:
            self._contexts[ctx.task_id] = ctx
            cancelled = ctx.task_id in self._cancels
        if cancelled:
            ctx.cancel()

    def _ask_for_cancels(self) -> None:
        """The heartbeat's look at which held tasks were cancelled, in case a notice was
        lost (a broker connection that broke); forgets notices of tasks not held."""
        with self._held_lock:
            held = list(self._held)
            self._cancels.intersection_update(held)
        if not held:
            return
        try:
            asked = self.broker.cancel_requested(held)
        except BrokerError as exc:
            log.warning("heartbeat could not ask for cancelled tasks: %s", exc.message)
            return
        for task_id in asked - self._cancels:
            self._on_cancel(task_id)

    def _heartbeat(self) -> None:
        interval = self.config.heartbeat_interval_s
        vt = self.config.visibility_timeout_s
        tick = min(interval, EARLY_ACK_AFTER_S)
        next_beat = time.monotonic() + interval
        while not self._heartbeat_stop.wait(tick):
            if time.monotonic() < next_beat:
                self._ack_behind_a_running_task()
                continue
            next_beat = time.monotonic() + interval
            self._collect_prefetch()
            self._behind_a_long_task(interval)
            now = time.monotonic()
            with self._held_lock:
                # a task past its own deadline is not kept: if it hangs, it is redelivered
                live = [
                    c for c, deadline in self._held.values() if deadline is None or now < deadline
                ]
            if not live:
                continue
            try:
                held = self.broker.extend_many(live, vt)
            except BrokerError as exc:
                log.warning("heartbeat could not extend %d claims: %s", len(live), exc.message)
                continue
            lost = [c for c, ok in zip(live, held, strict=True) if not ok]
            if lost:
                log.info("%d claims were redelivered elsewhere before they finished", len(lost))
            self._ask_for_cancels()

    def _ack_behind_a_running_task(self) -> None:
        """Between beats: a task expected to be quick has run ``EARLY_ACK_AFTER_S`` or
        more (hung on a service, say): the results finished before it are acked now, not
        at the next beat (a third of the visibility timeout), so their callers are told."""
        running = self._running
        if running is None or time.monotonic() - running[1] < EARLY_ACK_AFTER_S:
            return
        with self._held_lock:
            running = self._running
            if running is None or running[0] not in self._held:
                return
            finished = self._finished_before_it()
        if finished:
            self._ack_early(finished, running, time.monotonic())

    def _finished_before_it(self) -> list[tuple[Claim, Any]]:
        """Under ``_held_lock``: copies of the loop's results not acked yet (it only appends
        to its lists while its task runs); what the loop acked since is no longer held.
        The loop acks these again later, which changes nothing: an ack of an ended task
        is a no-op."""
        return [(c, r) for c, r in [*self._carried, *self._results] if c.task.id in self._held]

    def _behind_a_long_task(self, beat_s: float) -> None:
        """A task running for a heartbeat or more: the results finished before it are
        acked (their callers wait no longer), and the tasks waiting behind it (the rest
        of its batch, a prefetched batch) go back to the queue for an idle process."""
        now = time.monotonic()
        with self._held_lock:
            running = self._running
            if running is None or running[0] not in self._held or now - running[1] < beat_s:
                return
            finished = self._finished_before_it()
            # _started checks under this lock whether its task is still held: a task
            # taken out of _held here is never started by the loop
            waiting = [c for c in self._batch[self._at + 1 :] if c.task.id in self._held]
            for claim in waiting:
                del self._held[claim.task.id]
        if finished:
            self._ack_early(finished, running, now)
        prefetch = self._prefetch
        if prefetch is not None:
            with contextlib.suppress(BrokerError):
                waiting += prefetch.take()
        if not waiting:
            return
        log.info(
            "task %s has run %.1fs: giving the %d tasks waiting behind it back to the queue",
            running[0],
            now - running[1],
            len(waiting),
        )
        # one try, not the loop's retries: the heartbeat must go on extending the others
        # (no longer held here, they come back after the visibility timeout if this fails)
        try:
            self.broker.release(waiting)
        except BrokerError as exc:
            log.warning("could not give back %d tasks: %s", len(waiting), exc.message)
        self._drop(waiting)

    def _ack_early(
        self, finished: list[tuple[Claim, Any]], running: tuple[str, float], now: float
    ) -> None:
        """Ack results that wait behind a long task (one try: the loop acks them anyway)."""
        log.debug(
            "task %s has run %.1fs: acking the %d results finished before it",
            running[0],
            now - running[1],
            len(finished),
        )
        try:
            self.broker.ack_many(finished)
        except (BrokerError, TypeError, ValueError) as exc:
            # broker down, or a result that is not JSON: the loop settles them later
            log.debug("early ack of %d results failed: %s", len(finished), exc)
            return
        self._drop([c for c, _ in finished])

    # -- signals -----------------------------------------------------------------------

    def request_stop(self, signum: int | None = None) -> None:
        """Stop claiming; the running task gets ``grace_s`` to finish.

        ``signum``: the stop signal that asked (SIGTERM, SIGINT); the second one stops
        at once. A stop without a signal (the supervisor gone) is not the first of two.
        """
        if signum is not None:
            if self._signalled:  # a second signal: do not wait any longer
                self._stop_now("a second stop signal")
                return
            self._signalled = True
        if self._stop_begun or self.stop_event.is_set():
            return
        self._stop_begun = True
        log.info(
            "stopping%s: finishing the running task within %.1fs",
            f" on {signal.Signals(signum).name}" if signum is not None else "",
            self.config.grace_s,
        )
        # The timer is in place before the stop can be seen: a loop that stops at once
        # must find it to cancel it (a timer cancelled before it starts never fires).
        timer = threading.Timer(self.config.grace_s, self._stop_now, args=("grace period over",))
        timer.daemon = True
        self._grace_timer = timer
        self._stop_deadline = time.monotonic() + self.config.grace_s
        self.stop_event.set()
        timer.start()
        # the tasks of the batch that have not started wait for nothing here: they go
        # back to the queue now, not when the running one ends (on a thread: this may
        # be a signal handler that landed in the middle of a broker call)
        threading.Thread(
            target=self._give_back_waiting, name="crank-give-back", daemon=True
        ).start()

    def _give_back_waiting(self) -> None:
        # The loop writes _at before it looks at the stop, and the stop was set before
        # this reads it: a task after _at can never start any more (it sees the stop).
        batch, at = self._batch, self._at
        waiting = [c for c in batch[at + 1 :] if self._holds(c)]
        if waiting:
            log.info("giving %d unstarted tasks back to the queue", len(waiting))
            self._release(waiting)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.request_stop(signum)

    def _on_parent_gone(self, signum: int, frame: FrameType | None) -> None:
        # PR_SET_PDEATHSIG fires when the *thread* that started this process exits: the
        # supervisor's monitor thread starts replacements and ends when the pool stops.
        # While the parent runs, it is no stop: the parent says when (SIGTERM).
        if os.getppid() == self._parent:
            log.debug("the thread that started this process ended; the supervisor runs on")
            return
        # The kernel repeats it as the orphan is handed on (PARENT_GONE_SIGNAL): every
        # delivery is the same graceful stop, never "a second signal" that cuts the grace.
        told, self._parent_gone = self._parent_gone, True
        if told:
            log.info("told again that the supervisor is gone: the stop goes on as it was")
        else:
            log.warning("the supervisor is gone: stopping")
        self.request_stop()

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(PARENT_GONE_SIGNAL, self._on_parent_gone)

    def _collect_prefetch(self) -> None:
        """Hold the tasks of a prefetch still in flight (from the heartbeat or grace timer)."""
        prefetch = self._prefetch
        if prefetch is not None:
            with contextlib.suppress(BrokerError):
                prefetch.collect()

    def _stop_now(self, why: str) -> None:
        """Give back what this process holds and exit, once, on a thread of its own.

        A second signal runs this from its handler, on the main thread, between two of
        that thread's bytecodes wherever it was: inside a transaction on the broker's
        connection, or holding the prefetch's lock. Broker work done there would run
        inside that transaction (SQLite refuses a nested BEGIN; a Redis reply would be
        half read) or wait for a lock its own thread holds. On its own thread it waits
        for the main thread to leave the broker, which it does once the handler returns.
        The thread is not a daemon: a main thread that ends first does not cut it short.
        """
        with self._stop_now_lock:
            if self._stopping_now:
                return
            self._stopping_now = True
        stopper = threading.Thread(
            target=self._give_back_and_exit, args=(why,), name="crank-stop-now"
        )
        stopper.start()

    def _give_back_and_exit(self, why: str) -> None:
        # The broker might not answer (down, or a lock that is never let go): the process
        # ends anyway, and what it held comes back after its visibility timeout.
        watchdog = threading.Timer(STOP_NOW_LIMIT_S, self._hard_exit, args=(EXIT_GRACE_EXCEEDED,))
        watchdog.daemon = True
        watchdog.start()
        self._collect_prefetch()
        now = time.monotonic()
        with self._held_lock:
            # a handler still running past its task's deadline spent its attempt: given
            # back for free, a task that always outlives it would come back for ever
            late = [
                (c, d)
                for c, d in self._held.values()
                if d is not None and d < now and c.task.id in self._contexts
            ]
            held = [c for c, _ in self._held.values()]
            cut = [c for c in held if c.task.id in self._contexts]
        late_ids = {c.task.id for c, _ in late}
        held = [c for c in held if c.task.id not in late_ids]
        for claim in cut:
            if claim.task.id not in late_ids:  # said, as nothing in the task will say it
                log.warning(
                    "task %s (%s) was cut short within its deadline: given back, its "
                    "attempt not counted, it runs again from the start",
                    claim.task.id,
                    claim.task.capability,
                )
        log.error(
            "stopping now (%s): releasing %d tasks%s and exiting",
            why,
            len(held),
            f", failing {len(late)} past their deadline" if late else "",
        )
        with contextlib.suppress(CrankError):
            self.broker.release(held)
        for claim, deadline in late:
            with contextlib.suppress(CrankError):
                self._time_out(claim, now - deadline, why)
        # A claim on its way back when this runs (the stop lands between the broker's
        # answer and the loop recording it) is nobody's but this consumer's: given back
        # now, not after its visibility timeout.
        with contextlib.suppress(CrankError):
            self.broker.recover(self.config.consumer)
        watchdog.cancel()
        logging.shutdown()
        self._hard_exit(EXIT_GRACE_EXCEEDED)

    def _time_out(self, claim: Claim, late_s: float, why: str) -> None:
        """Fail ``claim``'s task as out of time (retried while attempts are left, then a
        dead letter): its handler still ran ``late_s`` past its deadline at a stop."""
        task = claim.task
        binding = self.bindings.get(task.capability)
        timeout = task.timeout_s or (binding.capability.timeout_s if binding else None) or 0
        error = {
            "code": "TIMEOUT",
            "message": (
                f"task {task.id} ({task.capability}) still ran {late_s:.1f} s past its "
                f"deadline when its worker process stopped ({why})"
            ),
            "type": "TaskCancelled",
        }
        status = self.broker.fail(claim, error, retryable=True)
        self._finished(task.capability, status, timeout + late_s)

    # -- the loop ----------------------------------------------------------------------

    def run(self) -> int:
        """Load the workers, then serve until stopped; returns the process exit status."""
        health = threading.Thread(target=self._health, name="crank-health", daemon=True)
        health.start()
        try:
            self.workers.load()  # a worker that fails is reported; the others serve
            self._reports.write(self.workers.report())
            return self._serve()
        finally:
            self._health_stop.set()
            self.workers.stop()
            self._cancel_grace_timer()

    def _serve(self) -> int:
        broker = self.broker  # connects (retrying) before the first claim
        if self.stop_event.is_set():
            self._cancel_grace_timer()
            return int(ExitCode.OK)
        # before the first claim: a cancel sent while a claim is on its way is not lost
        stop_listening = self._listen_for_cancels(broker)
        beat = threading.Thread(target=self._heartbeat, name="crank-heartbeat", daemon=True)
        beat.start()
        failed = [w.name for w in self.workers.workers if w.state == "failed"]
        log.info(
            "worker %s serving %s from %s%s",
            self.config.consumer,
            ", ".join(self._claimable()) or "nothing",
            broker.url,
            f" (failed to load: {', '.join(failed)})" if failed else "",
        )
        try:
            done: list[tuple[Claim, Any]] = []
            claims: list[Claim] = []
            while not self.stop_event.is_set():
                if not claims:
                    claims, done = self._claim(done)  # waits up to block_s for work
                    continue
                # a full batch says more is waiting; a short one that the queue is empty
                more = len(claims) >= self._limit
                expected_s = self._expected_s(claims)
                quick = more and expected_s < self.config.prefetch_below_s
                prefetch = self._begin_prefetch(done) if quick else None
                if prefetch is not None:
                    done = []  # the prefetch acks them
                elif done and expected_s >= self.config.ack_flush_s:
                    self._ack(done)  # they would wait for this batch: their callers wait
                    done = []
                self._carried = done
                results = self._run_batch(claims)
                if prefetch is None:
                    claims, done = [], done + results
                else:
                    claims, done = self._end_prefetch(prefetch, results)
            # claimed while the stop came (a claim in flight when the signal arrived):
            # give them back unrun, so they do not wait out the visibility timeout
            self._release(claims)
            self._ack(done)
        finally:
            self._heartbeat_stop.set()
            beat.join(timeout=5)
            stop_listening()
        log.info("worker %s stopped after %d tasks", self.config.consumer, self.processed)
        return int(ExitCode.OK)

    def _cancel_grace_timer(self) -> None:
        """Stopped in time: the grace period must not end the process later."""
        if self._grace_timer is not None:
            self._grace_timer.cancel()

    def _claim(
        self, done: list[tuple[Claim, Any]], options: ClaimOptions | None = None
    ) -> tuple[list[Claim], list[tuple[Claim, Any]]]:
        """Ack the last batch's results and claim the next batch in one round trip.

        Returns the new claims and the results still to ack (when stopping while
        the broker is down). ``options``: what to claim (default: this loop's next claim).
        """
        cfg = self.config
        if options is None:
            options = self._claim_options(block_s=cfg.block_s)
        if options is None:  # no worker here is ready: settle what is done, wait, look again
            self._ack(done)
            self.stop_event.wait(cfg.block_s)
            return [], []

        def claim() -> list[Claim]:
            got = self.broker.ack_and_claim(done, options)
            self._hold(got)
            return got

        try:
            got = self._with_retry("claim tasks", claim, give_up=self._stopping)
        except BrokerError:
            return [], done  # stopping while the broker is down: nothing was claimed
        except (TypeError, ValueError):
            # A result that is not JSON: nothing was written; settle them one by one.
            self._ack(done)
            return self._claim([], options)
        self._drop([c for c, _ in done])
        return self._trim(got), []

    def _claim_options(self, *, block_s: float = 0.0) -> ClaimOptions | None:
        """What the next claim of this loop asks for; None when nothing can be served now."""
        capabilities = self._claimable()
        if self._full_until:
            now = time.monotonic()
            self._full_until = {c: t for c, t in self._full_until.items() if t > now}
            capabilities = tuple(c for c in capabilities if c not in self._full_until)
        if not capabilities:
            return None
        return replace(
            self._claim_base,
            capabilities=capabilities,
            limit=self._next_limit(capabilities),
            block_s=block_s,
        )

    def _next_limit(self, capabilities: Sequence[str]) -> int:
        """How many tasks the next claim of ``capabilities`` asks for: the largest of
        their claim sizes (:meth:`_claim_size`); what it brings of one beyond that one's
        own size goes back (:meth:`_trim`)."""
        limit = max((self._claim_size(c) for c in capabilities), default=1)
        self._limit = limit
        return limit

    def _claim_size(self, capability: str) -> int:
        """How many tasks of ``capability`` to hold at once (see ``batch_target_s``)."""
        task_s = self._task_s.get(capability)
        if task_s is None:
            return 1  # nothing known yet: a slow task must not bring a batch with it
        cfg = self.config
        return max(1, min(cfg.batch_size, int(cfg.batch_target_s / task_s)))

    def _sized(self, capability: str) -> bool:
        """Whether claims of ``capability`` are sized by :meth:`_claim_size` (a batching
        or concurrent capability of a subclass is sized by its room instead)."""
        return True

    def _observe(self, capability: str, seconds: float, tasks: int) -> None:
        """Fold a batch's time per task of ``capability`` into its recent average
        (half old, half new)."""
        if tasks <= 0:
            return
        per_task = max(seconds / tasks, 1e-7)
        old = self._task_s.get(capability)
        self._task_s[capability] = per_task if old is None else (old + per_task) / 2

    def _expected_s(self, claims: Sequence[Claim]) -> float:
        """How long ``claims`` should take by their capabilities' recent times."""
        task_s = self._task_s
        total = 0.0
        for claim in claims:
            seconds = task_s.get(claim.task.capability)
            if seconds is None:
                return math.inf
            total += seconds
        return total

    def _trim(self, claims: list[Claim]) -> list[Claim]:
        """The claims to run; those of a capability beyond its claim size go back now,
        so another process can take them instead of waiting behind this one's."""
        if len(claims) <= 1:
            return claims
        counts: dict[str, int] = {}
        for claim in claims:
            cap = claim.task.capability
            counts[cap] = counts.get(cap, 0) + 1
        over = {
            cap: size
            for cap, n in counts.items()
            if self._sized(cap) and n > (size := self._claim_size(cap))
        }
        if not over:
            return claims
        kept: list[Claim] = []
        extra: list[Claim] = []
        for claim in claims:
            cap = claim.task.capability
            if cap in over:
                if over[cap] <= 0:
                    extra.append(claim)
                    continue
                over[cap] -= 1
            kept.append(claim)
        log.debug("a claim brought %d tasks beyond their claim size: given back", len(extra))
        self._release(extra)
        return kept

    def _begin_prefetch(self, done: list[tuple[Claim, Any]]) -> Prefetch | None:
        """Send the ack of ``done`` and the claim of the next batch; None: do it the slow way."""
        options = self._claim_options()
        if options is None:
            return None
        try:
            pending = self.broker.begin_ack_and_claim(done, options)
        except (BrokerError, TypeError, ValueError):
            return None  # broker down or a result that is not JSON: _claim deals with both
        self._prefetch = Prefetch(pending, done, self._hold)
        return self._prefetch

    def _end_prefetch(
        self, prefetch: Prefetch, results: list[tuple[Claim, Any]]
    ) -> tuple[list[Claim], list[tuple[Claim, Any]]]:
        """The prefetched claims and the results still to ack."""
        try:
            claims = prefetch.take()
        except BrokerError as exc:
            # Unknown whether the ack went through: ack again (harmless) the slow way.
            log.warning("prefetching the next batch failed: %s", exc.message)
            return [], prefetch.acked + results
        finally:
            self._prefetch = None
        self._drop([c for c, _ in prefetch.acked])
        if self.stop_event.is_set():
            self._release(claims)
            claims = []
        return self._trim(claims), results

    def _run_batch(self, claims: list[Claim]) -> list[tuple[Claim, Any]]:
        """Run a batch; returns the results not acked yet (the next claim acks them).

        This loop runs once per task, so it reads the clock twice per task and keeps
        its lookups in locals: at queue speed, every attribute access shows.
        """
        done: list[tuple[Claim, Any]] = []
        first_done = 0.0
        bindings, stopping, finished = self.bindings, self.stop_event.is_set, self._finished
        limited, mark_started = self._limited, self._started
        flush_s = self.config.ack_flush_s
        monotonic = time.monotonic
        cancels, contexts, track = self._cancels, self._contexts, self._track
        task_s = self._task_s
        # One capability (the usual batch): its time per task is the batch's, and a
        # task known to be quick needs no look ahead (the check after each task flushes
        # in time). Mixed ones are timed per task and looked at before each starts.
        first_cap = claims[0].task.capability if claims else ""
        single = all(c.task.capability == first_cap for c in claims)
        known_s = task_s.get(first_cap)
        look_ahead = not single or known_s is None or known_s >= flush_s
        #: capability -> [seconds its tasks ran, how many], folded in at the end (mixed)
        spent: dict[str, list[float]] = {}
        batch_started, processed_before = monotonic(), self.processed
        self._batch = claims
        self._results = done
        for index, claim in enumerate(claims):
            self._at = index  # before the look at the stop (see _give_back_waiting)
            if stopping():
                # those a stop gave back already are not held any more
                self._release([c for c in claims[index:] if self._holds(c)])
                break
            task = claim.task
            if task.id in cancels:  # cancelled before it started: given back, it ends
                self._release([claim])
                finished(task.capability, "cancelled", 0.0)
                continue
            binding = bindings.get(task.capability)
            started = monotonic()
            if (
                look_ahead
                and done
                and started - first_done + task_s.get(task.capability, flush_s) >= flush_s
            ):
                # the results so far would wait for this task (slow, or not known yet)
                # past the flush: their callers are told now
                self._ack(done)
                done = self._results = []
            if binding is None:
                if not mark_started(claim, started, None):
                    continue  # given back behind a long task (see the heartbeat)
                outcome = Outcome(
                    error={
                        "code": "CAPABILITY_NOT_SERVED",
                        "message": f"no worker here serves {task.capability!r}",
                        "type": "CapabilityNotFound",
                    }
                )
            else:
                timeout = task.timeout_s or binding.capability.timeout_s
                deadline = started + timeout if timeout else None
                if not mark_started(claim, started, deadline):
                    continue  # given back behind a long task (see the heartbeat)
                slot = None
                if task.capability in limited:
                    slot = self._take_slot(claim)
                    if slot is None:
                        continue  # at its max_concurrency: back to the queue, unrun
                sink = self._event_publisher(claim) if binding.capability.streaming else None
                try:
                    outcome = run_task(binding, claim, sink, deadline, track)
                finally:
                    contexts.pop(task.id, None)
                    if slot is not None:
                        slot.release()
            ended = monotonic()
            self._running = None  # ended: no longer what the heartbeat looks at
            self.processed += 1
            if not single:
                took = spent.get(task.capability)
                if took is None:
                    spent[task.capability] = [ended - started, 1.0]
                else:
                    took[0] += ended - started
                    took[1] += 1.0
            if outcome.error is None:
                if not done:
                    first_done = ended
                done.append((claim, outcome.result))
                finished(task.capability, "succeeded", ended - started)
                if ended - first_done >= flush_s:
                    self._ack(done)
                    done = self._results = []
            else:
                status = self._fail(claim, outcome)
                finished(task.capability, status, ended - started)
        if single:
            ran = self.processed - processed_before
            self._observe(first_cap, monotonic() - batch_started, ran)
        for capability, (seconds, count) in spent.items():
            self._observe(capability, seconds, int(count))
        return done

    def _take_slot(self, claim: Claim) -> Slot | None:
        """A slot of the task's capability, or None: the task is given back and waits."""
        assert self._slots is not None
        capability = claim.task.capability
        slot = self._slots.try_acquire(capability)
        if slot is None:
            log.debug("%s is at its max_concurrency: task %s goes back", capability, claim.task.id)
            self._release([claim])
            # not claimed again for a moment: another process holds every slot
            self._full_until[capability] = time.monotonic() + FULL_RECHECK_S
        return slot

    def _event_publisher(self, claim: Claim) -> Callable[[Mapping[str, Any]], None]:
        """Publish each event of ``claim``'s task to the broker as it is emitted.

        One event per round trip: a client must see each event while the handler
        still runs, not when a buffer fills. A broker that stays down fails the task
        (the error reaches the handler, which the runtime records as a failure).
        """
        task_id = claim.task.id

        def publish(event: Mapping[str, Any]) -> None:
            self._with_retry(
                "publish an event",
                lambda: self.broker.publish_events(task_id, [event]),
                give_up=self._past_grace,
            )

        return publish

    def _finished(self, capability: str, status: str, duration_s: float) -> None:
        if self._on_finished is not None:
            try:
                self._on_finished(capability, status, duration_s)
            except Exception:
                log.exception("task_finished hook failed")

    def _ack(self, done: list[tuple[Claim, Any]]) -> None:
        if not done:
            return
        try:
            self._with_retry(
                "ack results", lambda: self.broker.ack_many(done), give_up=self._past_grace
            )
        except (TypeError, ValueError):
            self._ack_one_by_one(done)
        except BrokerError as exc:
            # Stopping and the broker is still down: the claims expire and are redelivered.
            log.error(
                "could not ack %d results before the grace period ended: %s", len(done), exc.message
            )
        self._drop([c for c, _ in done])

    def _ack_one_by_one(self, done: list[tuple[Claim, Any]]) -> None:
        """A result that is not JSON fails its own task, not the batch."""
        for claim, result in done:
            try:
                json.dumps(result)
            except (TypeError, ValueError) as exc:
                error = {"code": "OUTPUT_NOT_JSON", "message": str(exc), "type": type(exc).__name__}
                self._fail(claim, Outcome(error=error))
                continue
            self._ack_single(claim, result)

    def _ack_single(self, claim: Claim, result: Any) -> None:
        self._with_retry(
            "ack a result", lambda: self.broker.ack(claim, result), give_up=self._past_grace
        )

    def _fail(self, claim: Claim, outcome: Outcome) -> str:
        error = outcome.error or {}
        try:
            status: str = self._with_retry(
                "record a failure",
                lambda: self.broker.fail(
                    claim, error, retryable=outcome.retryable, client_fault=outcome.client_fault
                ),
                give_up=self._past_grace,
            )
        except BrokerError as exc:
            log.error("could not record the failure of %s: %s", claim.task.id, exc.message)
            status = "running"
        self._drop([claim])
        log.debug(
            "task %s (%s) failed: %s -> %s", claim.task.id, claim.task.capability, error, status
        )
        return status

    def _release(self, claims: Sequence[Claim]) -> None:
        if not claims:
            return
        try:
            self._with_retry(
                "release tasks", lambda: self.broker.release(claims), give_up=self._past_grace
            )
        except BrokerError as exc:
            log.error(
                "could not release %d tasks (they come back after the visibility timeout): %s",
                len(claims),
                exc.message,
            )
        self._drop(claims)


def task_finished_hook() -> Callable[[str, str, float], None] | None:
    """Call ``crank_task_finished`` of the plugins (metrics when the supervisor asks for them)."""
    # the installed plugins only: none of crank's own implements the hook, and loading
    # them would import the CLI (click) into every worker process
    with warnings.catch_warnings(record=True) as caught:
        # a plugin that fails to import: crank run told the terminal once; here it is
        # a log line of this process, not a Python warning quoting crank's source line
        warnings.simplefilter("always", PluginLoadWarning)
        manager = build_plugin_manager(builtins=False)
    for warning in caught:
        if issubclass(warning.category, PluginLoadWarning):
            log.warning("%s", warning.message)
        else:
            warnings.showwarning(
                warning.message, warning.category, warning.filename, warning.lineno
            )
    metrics_on = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
    if metrics_on and not manager.pm.has_plugin("crank.runtime.metrics.task"):
        manager.register(TaskMetricsPlugin(), name="crank.runtime.metrics.task")
    callers = manager.callers("crank_task_finished")
    if not callers:
        return None

    def call(capability: str, status: str, duration_s: float) -> None:
        # each plugin on its own: one that raises must not keep the others (the
        # task metrics among them) from counting the task
        for plugin, finished in callers:
            try:
                finished(capability=capability, status=status, duration_s=duration_s)
            except Exception:
                log.exception("task_finished hook of plugin %r failed", plugin)

    return call


def shared_slots(
    workers: HostedWorkers, environ: Mapping[str, str] | None = None
) -> ConcurrencySlots | None:
    """The max_concurrency slots of the ``crank run`` that started this process, if any."""
    env = os.environ if environ is None else environ
    directory = env.get(SLOTS_DIR_ENV)
    if not directory:
        return None  # started alone: no other process to share a limit with
    limits = concurrency_limits((w.manifest for w in workers.workers), env)
    return ConcurrencySlots(directory, limits) if limits else None


def declares_batching(workers: HostedWorkers) -> bool:
    """Whether a capability of these workers declares batching or concurrency above 1
    (served by :mod:`crank.runtime.batching_loop`, which builds on this module)."""
    return any(
        cap.batched_or_concurrent
        for worker in workers.workers
        for cap in worker.manifest.capabilities
    )


#: the module that runs the worker processes of manifests with batching or concurrency.
BATCHING_MODULE = "crank.runtime.batching_loop"


def run_worker_process(
    config: WorkerProcessConfig,
    *,
    install_signals: bool = True,
    loop_class: type[WorkerLoop] | None = None,
) -> int:
    """Serve tasks until SIGTERM/SIGINT; returns the exit status."""
    run_dir.hold()  # started by crank run: its directory stays while this process drains
    workers = HostedWorkers.from_paths(config.manifest_paths)
    if loop_class is None:
        if declares_batching(workers):
            raise UsageError(
                "these manifests declare batching or concurrency, which this loop does not do",
                hint=f"run python -m {BATCHING_MODULE} with the same arguments (crank run does)",
            )
        loop_class = WorkerLoop
    loop = loop_class(
        config,
        workers=workers,
        on_finished=task_finished_hook(),
        slots=shared_slots(workers),
    )
    if install_signals:
        loop.install_signal_handlers()
    return loop.run()


def _number(kind: type[float] | type[int], least: float, *, inclusive: bool) -> Any:
    """An argparse type: a finite ``kind`` above ``least`` (or equal, when inclusive)."""
    word = "whole number" if kind is int else "number"
    bound = f"{least:g} or more" if inclusive else f"above {least:g}"

    def parse(text: str) -> float | int:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {word}") from None
        ok = math.isfinite(value) and (value >= least if inclusive else value > least)
        if not ok:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {word} {bound}")
        return value

    return parse


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m crank.runtime.worker_process",
        description="Run one crank worker process pulling tasks from a broker.",
    )
    p.add_argument(
        "--broker", required=True, help="memory://, sqlite:///PATH or redis://HOST:PORT/DB"
    )
    p.add_argument("--manifest", action="append", required=True, help="a crank.yaml (repeatable)")
    p.add_argument("--consumer", default=None, help="this process's name in the broker")
    p.add_argument(
        "--capability", action="append", default=None, help="serve only this id (repeatable)"
    )
    p.add_argument(
        "--batch-size",
        type=_number(int, 1, inclusive=True),
        default=32,
        help="most tasks one claim takes (fewer for slow tasks)",
    )
    seconds = _number(float, 0, inclusive=False)
    p.add_argument("--visibility-timeout", type=seconds, default=30.0)
    p.add_argument("--grace", type=_number(float, 0, inclusive=True), default=10.0)
    p.add_argument("--heartbeat", type=seconds, default=None)
    p.add_argument("--block", type=_number(float, 0, inclusive=True), default=1.0)
    p.add_argument(
        "--health-interval",
        type=seconds,
        default=2.0,
        help="seconds between the workers' readiness/liveness checks",
    )
    p.add_argument(
        "--log-mode", choices=("prod", "dev"), default=os.environ.get("CRANK_LOG_MODE", "prod")
    )
    return p


def main(argv: Sequence[str] | None = None, *, loop_class: type[WorkerLoop] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.heartbeat is not None and args.heartbeat >= args.visibility_timeout:
        # a lease renewed after it ran out: another worker takes the task meanwhile
        parser.error(
            f"--heartbeat {args.heartbeat:g} must be shorter than --visibility-timeout "
            f"{args.visibility_timeout:g} (a third of it is the default)"
        )
    configure_logging(args.log_mode)
    try:
        configure_tracing()
    except CrankError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return int(exc.exit_code)
    kwargs: dict[str, Any] = {}
    if args.consumer:
        kwargs["consumer"] = args.consumer
    config = WorkerProcessConfig(
        broker_url=args.broker,
        manifest_paths=tuple(args.manifest),
        capabilities=tuple(args.capability) if args.capability else None,
        batch_size=args.batch_size,
        visibility_timeout_s=args.visibility_timeout,
        grace_s=args.grace,
        heartbeat_s=args.heartbeat,
        block_s=args.block,
        health_interval_s=args.health_interval,
        **kwargs,
    )
    try:
        return run_worker_process(config, loop_class=loop_class)
    except CrankError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"  hint: {exc.hint}", file=sys.stderr)
        return int(exc.exit_code)


if __name__ == "__main__":
    sys.exit(main())
