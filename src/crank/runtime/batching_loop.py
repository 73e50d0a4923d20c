"""The worker loop of a process that serves capabilities with batching or concurrency.

``python -m crank.runtime.batching_loop`` takes the arguments of
``python -m crank.runtime.worker_process``; ``crank run`` starts its worker processes
with it when a manifest declares ``batching:`` or ``concurrency:`` above 1.

:class:`~crank.runtime.worker_process.WorkerLoop` runs one task at a time, each
with its own handler call. A process whose manifests declare ``batching:`` or
``concurrency:`` above 1 runs this loop instead, which adds, per capability:

* **batching**: the tasks it claims (queued ones and synchronous HTTP calls alike)
  wait in a :class:`~crank.runtime.batch_former.BatchFormer` until their batch is
  full, ``max_latency_ms`` passed since the oldest arrived, or a task's deadline
  comes close; then the batch handler runs once for all of them (each task in its
  own span, the call in one linked to them: :func:`~crank.runtime.tracing.batch_trace`);
* **concurrency N** (async handlers): up to N tasks (or batches) run at once on the
  process's *task loop*, an asyncio event loop on a thread of its own; each task
  keeps its own deadline and cancellation (``ctx``), so one slow call holds only
  its own place.

Claims ask only for capabilities with room (a batch not yet full, fewer than N in
flight), never more tasks than the least roomy of them takes (see
:meth:`BatchingLoop._claim_next`); plain capabilities of the same
process run one at a time on the main thread, as in ``WorkerLoop``.

At-least-once holds per task: each task of a batch is acked or failed on its own,
and only after the handler answered for it; a task waiting for its batch or
running is held by the process (the heartbeat extends it until the task's deadline:
a batch that hangs the process keeps none waiting behind it) and comes back to the
queue if the process dies. Tasks finished on the task loop are settled by a
settling thread (one ``ack_many`` for all that finished together), so a claim
waiting on the broker holds no result back; batches run on the main thread are
acked with the next claim, as ``WorkerLoop`` does. On SIGTERM the tasks still
waiting for a batch or a place are given back unrun and the running ones get the
grace period to finish.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from crank.errors import ExitCode
from crank.runtime.batch_former import BatchFormer, FormedBatch
from crank.runtime.task_metrics import observe_batch
from crank.runtime.tracing import batch_trace, record_outcome, task_trace
from crank.runtime.worker_process import (
    Outcome,
    WorkerLoop,
    main,
    outcome_of_error,
    task_context,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from crank.manifest import Batching
    from crank.runtime.brokers.contract import Claim, ClaimOptions
    from crank.runtime.concurrency import Slot
    from crank.runtime.hosted_workers import CapabilityBinding
    from crank.worker.context import TaskContext

log = logging.getLogger("crank.runtime.worker")

#: the longest a claim waits while a concurrent capability is at its limit (it is left
#: out of the claim, and a place freed meanwhile is seen only when the claim returns).
AT_LIMIT_POLL_S = 0.01


@dataclass(frozen=True)
class Lane:
    """How one capability's tasks are run by this process."""

    capability: str
    batching: Batching | None
    #: units (tasks, or batches) in flight at once; above 1 they run on the task loop.
    concurrency: int

    @property
    def on_task_loop(self) -> bool:
        return self.concurrency > 1


def lanes_of(bindings: dict[str, CapabilityBinding]) -> dict[str, Lane]:
    """The capabilities with batching or concurrency; the others are plain."""
    return {
        cap: Lane(cap, b.capability.batching, b.capability.concurrency)
        for cap, b in bindings.items()
        if b.capability.batching is not None or b.capability.concurrency > 1
    }


@dataclass
class _Finished:
    """What a unit on the task loop came to, for the settling thread."""

    capability: str
    outcomes: list[tuple[Claim, Outcome]] = field(default_factory=list)
    seconds: float = 0.0
    #: claims given back unrun (no max_concurrency slot was free).
    give_back: list[Claim] = field(default_factory=list)


def _outcome(value: Any, claim: Claim, ctx: TaskContext) -> Outcome:
    if isinstance(value, Exception):
        return outcome_of_error(value, claim.task, ctx)
    return Outcome(result=value)


def run_formed(
    binding: CapabilityBinding, items: Sequence[tuple[Claim, TaskContext]]
) -> list[Outcome]:
    """Run a batch handler once for ``items``, on this thread; one outcome per item."""
    cap = binding.capability.id
    try:
        values = binding.host.call_batch(cap, [(c.task.payload, ctx) for c, ctx in items])
    # the host itself failed (not the handler: it answers per item), or the handler
    # called sys.exit(): each item fails, the process goes on
    except (Exception, SystemExit) as exc:
        return [outcome_of_error(exc, c.task, ctx) for c, ctx in items]
    return [_outcome(v, c, ctx) for v, (c, ctx) in zip(values, items, strict=True)]


async def arun_formed(
    binding: CapabilityBinding, items: Sequence[tuple[Claim, TaskContext]]
) -> list[Outcome]:
    """:func:`run_formed` on the running event loop."""
    cap = binding.capability.id
    try:
        values = await binding.host.acall_batch(cap, [(c.task.payload, ctx) for c, ctx in items])
    except (Exception, SystemExit) as exc:  # as run_formed
        return [outcome_of_error(exc, c.task, ctx) for c, ctx in items]
    return [_outcome(v, c, ctx) for v, (c, ctx) in zip(values, items, strict=True)]


class BatchingLoop(WorkerLoop):
    """Claim → batch or run concurrently → ack, per task (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lanes: dict[str, Lane] = {}
        self._former = BatchFormer({})
        #: under ``_room``: units waiting for a place on the task loop, and those in flight.
        self._room = threading.Condition()
        self._backlog: dict[str, deque[Claim | FormedBatch]] = {}
        self._in_flight: dict[str, int] = {}
        #: the most units each capability had in flight at once.
        self.peak_in_flight: dict[str, int] = {}
        self._finished_queue: queue.SimpleQueue[_Finished | None] = queue.SimpleQueue()
        self._task_loop: asyncio.AbstractEventLoop | None = None

    # -- the loop ----------------------------------------------------------------------

    def _serve(self) -> int:
        broker = self.broker  # connects (retrying) before the first claim
        if self.stop_event.is_set():
            self._cancel_grace_timer()
            return int(ExitCode.OK)
        self._lanes = lanes_of(self.bindings)
        self._former = BatchFormer(
            {c: lane.batching for c, lane in self._lanes.items() if lane.batching is not None}
        )
        for cap in self._lanes:
            self._backlog[cap] = deque()
            self._in_flight[cap] = 0
            self.peak_in_flight[cap] = 0
        threads = [
            threading.Thread(target=self._heartbeat, name="crank-heartbeat", daemon=True),
            threading.Thread(target=self._settle, name="crank-settle", daemon=True),
        ]
        if any(lane.on_task_loop for lane in self._lanes.values()):
            self._task_loop = asyncio.new_event_loop()
            threads.append(
                threading.Thread(target=self._run_task_loop, name="crank-task-loop", daemon=True)
            )
        # before the first claim: a cancel sent while a claim is on its way is not lost
        stop_listening = self._listen_for_cancels(broker)
        for thread in threads:
            thread.start()
        log.info(
            "worker %s serving %s from %s (batching: %s; concurrent: %s)",
            self.config.consumer,
            ", ".join(self._claimable()) or "nothing",
            broker.url,
            ", ".join(c for c, lane in self._lanes.items() if lane.batching) or "none",
            ", ".join(
                f"{c}={lane.concurrency}" for c, lane in self._lanes.items() if lane.on_task_loop
            )
            or "none",
        )
        try:
            done: list[tuple[Claim, Any]] = []
            while not self.stop_event.is_set():
                done += self._run_due()
                claimed = self._claim_next(done)
                if claimed is None:  # every lane is full (or no worker is ready): wait
                    self._ack(done)
                    done = []
                    self._wait_for_room()
                    continue
                claims, done = claimed
                done += self._take(claims)
            self._release(self._unstarted())
            self._ack(done)
            self._wait_for_in_flight()
        finally:
            self._finished_queue.put(None)
            if self._task_loop is not None:
                self._task_loop.call_soon_threadsafe(self._task_loop.stop)
            self._heartbeat_stop.set()
            for thread in threads:
                thread.join(timeout=5)
            stop_listening()
            if self._task_loop is not None and not self._task_loop.is_running():
                self._task_loop.close()
        log.info("worker %s stopped after %d tasks", self.config.consumer, self.processed)
        return int(ExitCode.OK)

    def _run_task_loop(self) -> None:
        """The task loop's thread. An async handler's ``sys.exit()`` is raised out of the
        loop by asyncio (as well as to the call awaiting it, which fails its task): the
        loop goes on, or every task on it would wait for ever."""
        loop = self._task_loop
        assert loop is not None
        while True:
            try:
                loop.run_forever()
            except (SystemExit, KeyboardInterrupt) as exc:
                log.error("a handler on the task loop raised %r; the loop goes on", exc)
                continue
            return

    def _rooms(self) -> tuple[dict[str, int], dict[str, int], bool]:
        """How many tasks each capability with room takes now: (batching or concurrent
        ones, plain ones, whether a concurrent capability is at its limit)."""
        capabilities = self._claimable()
        if self._full_until:
            now = time.monotonic()
            self._full_until = {c: t for c, t in self._full_until.items() if t > now}
            capabilities = tuple(c for c in capabilities if c not in self._full_until)
        shaped: dict[str, int] = {}
        plain: dict[str, int] = {}
        at_limit = False
        with self._room:
            for cap in capabilities:
                lane = self._lanes.get(cap)
                if lane is None:
                    plain[cap] = self._claim_size(cap)
                    continue
                if self._backlog[cap] and lane.batching is not None:
                    free = 0  # a released batch waits for a place: do not form another yet
                elif lane.batching is not None:
                    free = self._former.room(cap)
                else:
                    free = lane.concurrency - self._in_flight[cap] - len(self._backlog[cap])
                    at_limit = at_limit or self._in_flight[cap] >= lane.concurrency
                if free > 0:
                    shaped[cap] = free
        return shaped, plain, at_limit

    def _options(
        self, shaped: dict[str, int], plain: dict[str, int], block_s: float
    ) -> ClaimOptions:
        """A claim of the capabilities in ``shaped`` and ``plain``: no more tasks than the
        least roomy batching or concurrent one takes (a claim cannot say how many of each
        it wants, and a task claimed beyond its room would wait here while another
        process could run it), and no more than the largest claim size of the plain ones
        (what a plain one brings beyond its own size goes back at once: ``_trim``)."""
        limits = [min(shaped.values())] if shaped else []
        if plain:
            limits.append(max(plain.values()))
        self._limit = min(limits)
        return replace(
            self._claim_base,
            capabilities=(*shaped, *plain),
            limit=self._limit,
            block_s=block_s,
        )

    def _sized(self, capability: str) -> bool:
        return capability not in self._lanes

    def _claim_next(
        self, done: list[tuple[Claim, Any]]
    ) -> tuple[list[Claim], list[tuple[Claim, Any]]] | None:
        """Ack ``done`` and claim what has room; None (nothing acked) when nothing has.

        First the batching and concurrent capabilities alone, without waiting (their
        rooms are large; a plain capability's is its next claim's size, often 1); then,
        if that found nothing, every capability with room, waiting up to ``block_s``
        (less when a batch is due sooner, or when a concurrent capability is at its
        limit: a place it frees is seen only when the claim returns); or, if it found
        some, the plain capabilities without waiting, so they are never starved.
        """
        shaped, plain, at_limit = self._rooms()
        if not shaped and not plain:
            return None
        claims: list[Claim] = []
        if shaped:
            claims, done = self._claim(done, self._options(shaped, {}, 0.0))
        if not claims:
            block_s = self._until_next_release(self.config.block_s)
            if at_limit:
                block_s = min(block_s, AT_LIMIT_POLL_S)
            got, done = self._claim(done, self._options(shaped, plain, block_s))
            claims += got
        elif plain:
            got, done = self._claim(done, self._options({}, plain, 0.0))
            claims += got
        return claims, done

    def _until_next_release(self, longest: float) -> float:
        release = self._former.next_release()
        if release is None:
            return longest
        return min(longest, max(0.0, release - time.monotonic()))

    def _wait_for_room(self) -> None:
        """Until a unit on the task loop finishes or the next batch is due."""
        with self._room:
            self._room.wait(self._until_next_release(self.config.block_s))

    def _take(self, claims: list[Claim]) -> list[tuple[Claim, Any]]:
        """Route the claimed tasks: to their batch, to the task loop, or run them now
        (plain capabilities); the results of those run here, to ack."""
        now = time.monotonic()
        plain: list[Claim] = []
        for claim in self._not_cancelled(claims):
            cap = claim.task.capability
            lane = self._lanes.get(cap)
            if lane is None:
                plain.append(claim)
            elif lane.batching is not None:
                binding = self.bindings[cap]
                timeout = claim.task.timeout_s or binding.capability.timeout_s
                deadline = now + timeout if timeout else None
                self._former.add(claim, now, deadline)
                # held no longer than its deadline, as a running task: behind a batch
                # that hangs this process, it goes to another process, not stays here
                self._hold_until(claim, deadline)
            else:
                with self._room:
                    self._backlog[cap].append(claim)
                self._dispatch(cap)
        if not plain:
            return []
        return self._run_batch(plain)

    def _run_due(self) -> list[tuple[Claim, Any]]:
        """Run (or hand to the task loop) the batches due now; the results to ack."""
        if self.stop_event.is_set():
            return []  # they are given back unrun
        done: list[tuple[Claim, Any]] = []
        for formed in self._former.due(time.monotonic()):
            self._batch_released(formed)
            kept = set(map(id, self._not_cancelled([w.claim for w in formed.items])))
            batch = replace(formed, items=tuple(w for w in formed.items if id(w.claim) in kept))
            if not batch.items:
                continue
            if self._lanes[batch.capability].on_task_loop:
                with self._room:
                    self._backlog[batch.capability].append(batch)
                self._dispatch(batch.capability)
            else:
                done += self._run_here(batch)
        return done

    def _on_cancel(self, task_id: str) -> None:
        super()._on_cancel(task_id)
        with self._held_lock:
            started = task_id in self._contexts
        if not started:  # waiting for its batch or its place: it never starts
            log.info("task %s was cancelled before it started: it goes back unrun", task_id)

    def _not_cancelled(self, claims: Sequence[Claim]) -> list[Claim]:
        """The claims not cancelled before they started; those are given back (they end
        ``cancelled``, never run)."""
        with self._held_lock:
            cancelled = [c for c in claims if c.task.id in self._cancels]
        if not cancelled:
            return list(claims)
        self._release(cancelled)
        for claim in cancelled:
            self._finished(claim.task.capability, "cancelled", 0.0)
        gone = set(map(id, cancelled))
        return [c for c in claims if id(c) not in gone]

    def _batch_released(self, batch: FormedBatch) -> None:
        observe_batch(batch.capability, len(batch.items), batch.reason, batch.waits())

    def _unstarted(self) -> list[Claim]:
        """Every task still waiting for a batch or a place, taken out (stopping)."""
        claims = [w.claim for w in self._former.drain()]
        with self._room:
            for backlog in self._backlog.values():
                for unit in backlog:
                    claims.extend(_claims_of(unit))
                backlog.clear()
        return claims

    def _wait_for_in_flight(self) -> None:
        """Until every unit on the task loop is settled (the grace timer ends it sooner)."""
        with self._room:
            while any(self._in_flight.values()):
                self._room.wait(0.1)

    # -- batches run here ----------------------------------------------------------------

    def _slots_for(self, claims: Sequence[Claim]) -> tuple[list[Claim], list[Slot]]:
        """The claims that got a max_concurrency slot (the others went back) and the slots."""
        if claims and claims[0].task.capability not in self._limited:
            return list(claims), []
        kept: list[Claim] = []
        slots: list[Slot] = []
        for claim in claims:
            slot = self._take_slot(claim)  # None: it was given back
            if slot is not None:
                kept.append(claim)
                slots.append(slot)
        return kept, slots

    def _begin(
        self, claims: Sequence[Claim], deadlines: Sequence[float | None]
    ) -> list[tuple[Claim, TaskContext]]:
        """The tasks' contexts, tracked (a cancel reaches ``ctx.cancelled``) until
        :meth:`_untrack`; each task is held until its deadline from now on."""
        items = []
        for claim, deadline in zip(claims, deadlines, strict=True):
            self._hold_until(claim, deadline)
            ctx = task_context(claim, deadline)
            self._track(ctx)
            items.append((claim, ctx))
        return items

    def _untrack(self, claims: Sequence[Claim]) -> None:
        with self._held_lock:
            for claim in claims:
                self._contexts.pop(claim.task.id, None)

    def _run_here(self, batch: FormedBatch) -> list[tuple[Claim, Any]]:
        """Run a batch on this thread; the results to ack (failures are recorded now)."""
        cap = batch.capability
        deadlines = {w.claim.task.id: w.deadline for w in batch.items}
        claims, slots = self._slots_for([w.claim for w in batch.items])
        if not claims:
            return []
        held_until = [deadlines[c.task.id] for c in claims]
        items = self._begin(claims, held_until)
        started = time.monotonic()
        try:
            with (
                self._calling(cap, claims, held_until, batch=True),
                batch_trace(cap, [c.task for c in claims], batch.reason) as traced,
            ):
                outcomes = run_formed(self.bindings[cap], items)
                traced.record([outcome.error for outcome in outcomes])
        finally:
            self._untrack(claims)
            for slot in slots:
                slot.release()
        seconds = time.monotonic() - started
        self._former.ran(cap, seconds)
        done: list[tuple[Claim, Any]] = []
        for claim, outcome in zip(claims, outcomes, strict=True):
            self.processed += 1
            if outcome.error is None:
                done.append((claim, outcome.result))
                self._finished(cap, "succeeded", seconds)
            else:
                self._finished(cap, self._fail(claim, outcome), seconds)
        return done

    # -- the task loop ------------------------------------------------------------------

    def _dispatch(self, capability: str) -> None:
        """Start units of ``capability`` on the task loop while it has places."""
        lane = self._lanes[capability]
        loop = self._task_loop
        assert loop is not None
        while True:
            with self._room:
                backlog = self._backlog[capability]
                if not backlog or self._in_flight[capability] >= lane.concurrency:
                    return
                unit = backlog.popleft()
                self._in_flight[capability] += 1
                self.peak_in_flight[capability] = max(
                    self.peak_in_flight[capability], self._in_flight[capability]
                )
            asyncio.run_coroutine_threadsafe(self._run_unit(capability, unit), loop)

    async def _run_unit(self, capability: str, unit: Claim | FormedBatch) -> None:
        """Run one task or batch on the task loop; whatever happens, it is settled."""
        finished = _Finished(capability)
        try:
            await self._run_unit_inner(unit, finished)
        except BaseException as exc:  # never lose a unit: each task gets an outcome
            log.exception("running %s on the task loop failed", capability)
            settled = {c.task.id for c, _ in finished.outcomes} | {
                c.task.id for c in finished.give_back
            }
            error = exc if isinstance(exc, Exception) else RuntimeError(repr(exc))
            finished.outcomes += [
                (c, outcome_of_error(error, c.task))
                for c in _claims_of(unit)
                if c.task.id not in settled
            ]
            if not isinstance(exc, Exception):
                raise
        finally:
            self._finished_queue.put(finished)

    async def _run_unit_inner(self, unit: Claim | FormedBatch, finished: _Finished) -> None:
        binding = self.bindings[finished.capability]
        if isinstance(unit, FormedBatch):
            deadlines = {w.claim.task.id: w.deadline for w in unit.items}
            claims = [w.claim for w in unit.items]
        else:
            timeout = unit.task.timeout_s or binding.capability.timeout_s
            deadlines = {unit.task.id: time.monotonic() + timeout if timeout else None}
            claims = [unit]
        kept, slots = self._slots_for_async(claims, finished)
        held_until = [deadlines[c.task.id] for c in kept]
        items = self._begin(kept, held_until)
        started = time.monotonic()
        try:
            if not items:
                return
            calling = self._calling(
                finished.capability, kept, held_until, batch=isinstance(unit, FormedBatch)
            )
            if isinstance(unit, FormedBatch):
                with (
                    calling,
                    batch_trace(unit.capability, [c.task for c in kept], unit.reason) as traced,
                ):
                    outcomes = await arun_formed(binding, items)
                    traced.record([outcome.error for outcome in outcomes])
            else:
                claim, ctx = items[0]
                task = claim.task
                with calling, task_trace(task.id, task.capability, task.meta) as current:
                    try:
                        result = await binding.host.acall(task.capability, task.payload, ctx)
                    except (Exception, SystemExit) as exc:  # sys.exit(): the task fails
                        outcomes = [outcome_of_error(exc, task, ctx)]
                    else:
                        outcomes = [Outcome(result=result)]
                    record_outcome(current, outcomes[0].error)
        finally:
            self._untrack(kept)
            for slot in slots:
                slot.release()
            finished.seconds = time.monotonic() - started
        finished.outcomes = list(zip(kept, outcomes, strict=True))

    def _slots_for_async(
        self, claims: list[Claim], finished: _Finished
    ) -> tuple[list[Claim], list[Slot]]:
        """Like :meth:`_slots_for`, but the claims without a slot are given back by the
        settling thread (no broker call on the task loop)."""
        if not claims or claims[0].task.capability not in self._limited:
            return claims, []
        assert self._slots is not None
        kept: list[Claim] = []
        slots: list[Slot] = []
        for claim in claims:
            slot = self._slots.try_acquire(claim.task.capability)
            if slot is None:
                finished.give_back.append(claim)
            else:
                kept.append(claim)
                slots.append(slot)
        return kept, slots

    def _settle(self) -> None:
        """The settling thread: ack or fail what the task loop finished, free its places."""
        while True:
            first = self._finished_queue.get()
            if first is None:
                return
            batch = [first]
            stop = False
            while True:
                try:
                    more = self._finished_queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                batch.append(more)
            self._settle_finished(batch)
            if stop:
                return

    def _settle_finished(self, finished: list[_Finished]) -> None:
        done: list[tuple[Claim, Any]] = []
        try:
            for unit in finished:
                if unit.give_back:
                    self._release(unit.give_back)
                    self._full_until[unit.capability] = time.monotonic() + 0.05
                for claim, outcome in unit.outcomes:
                    self.processed += 1
                    if outcome.error is None:
                        done.append((claim, outcome.result))
                        self._finished(unit.capability, "succeeded", unit.seconds)
                    else:
                        self._finished(unit.capability, self._fail(claim, outcome), unit.seconds)
            self._ack(done)
        except Exception:
            log.exception("settling finished tasks failed (they come back after the timeout)")
        finally:
            with self._room:
                for unit in finished:
                    self._in_flight[unit.capability] -= 1
                self._room.notify_all()
            for cap in {unit.capability for unit in finished}:
                self._dispatch(cap)


def _claims_of(unit: Claim | FormedBatch) -> list[Claim]:
    if isinstance(unit, FormedBatch):
        return [w.claim for w in unit.items]
    return [unit]


__all__ = ["BatchingLoop", "Lane", "arun_formed", "lanes_of", "run_formed"]

if __name__ == "__main__":  # python -m crank.runtime.batching_loop (the supervisor's children)
    sys.exit(main(loop_class=BatchingLoop))
