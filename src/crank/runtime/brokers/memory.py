"""An in-process broker with the full semantics, for tests and single-process use.

Claiming costs O(log n) per task delivered, however many are queued (plus a
look at the head of each capability asked for): a task that can be claimed
now sits in a heap of its capability, ordered as the protocol says
(expired leases first, then higher priority, then oldest); a task that cannot
yet (a lease running, a retry backing off) sits in one heap ordered by the time
it becomes visible, and moves over when that time comes. A task whose state
changes is pushed again rather than searched for: its older heap items go stale
and are dropped when they surface (lazy deletion).
"""

from __future__ import annotations

import heapq
import itertools
import json
import threading
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from crank.runtime.brokers.common import (
    CANCELLED_BEFORE_IT_RAN,
    CANCELLED_WHILE_IT_RAN,
    CANCELLED_WORKER_GONE,
    BrokerOptions,
    EndedByClaims,
    cancelled_error,
    new_id,
    worker_lost_error,
)
from crank.runtime.brokers.contract import (
    FINAL_STATUSES,
    INLINE_LIMIT,
    Broker,
    Cancellation,
    Claim,
    ClaimOptions,
    DeadLetterChange,
    IdempotencyKeyReused,
    Notice,
    QueueStats,
    Submitted,
    TaskPage,
    TaskQuery,
    TaskRecord,
    TaskSpec,
    TaskStatus,
    TaskSummary,
    input_fingerprint,
    priority_band,
)
from crank.runtime.brokers.notices import ResultNotices

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

_ACTIVE = frozenset({"pending", "retrying", "running"})


@dataclass
class _Entry:
    record: TaskRecord
    seq: int
    visible_at: float
    consumer: str | None = None
    receipt: str | None = None
    #: the token of the entry's newest heap item; older items are stale.
    token: int = 0


#: (expired lease first, -priority, visible_at, seq, token, entry): the claim order.
#: Tokens are unique, so comparisons never reach the entry.
_ReadyItem = tuple[bool, int, float, int, int, _Entry]
#: (visible_at, token, entry): a lease or a backoff, due at visible_at.
_WaitingItem = tuple[float, int, _Entry]


class MemoryBroker(Broker):
    """Everything in a dict behind one lock; not shared across processes."""

    def __init__(
        self,
        url: str = "memory://",
        *,
        retry_base_s: float = 0.5,
        retry_max_s: float = 60.0,
        result_ttl_s: float = 86_400.0,
    ) -> None:
        self.url = url
        self.options = BrokerOptions(retry_base_s, retry_max_s, result_ttl_s)
        self._tasks: dict[str, _Entry] = {}
        self._idempotency: dict[str, str] = {}
        self._seq = 0
        self._tokens = itertools.count(1)
        #: capability -> heap of the tasks claimable now; see :meth:`_schedule`.
        self._ready: dict[str, list[_ReadyItem]] = {}
        #: heap of the leased and backing-off tasks, soonest visible first.
        self._waiting: list[_WaitingItem] = []
        #: heap of (expires_at, task id) of the acked tasks; see :meth:`_purge`.
        self._expiry: list[tuple[float, str]] = []
        self._cond = threading.Condition()
        self._ended_by_claims = EndedByClaims()
        #: task id -> (its events, when they expire); see :meth:`publish_events`.
        self._events: dict[str, tuple[list[Mapping[str, Any]], float]] = {}
        #: waiters in this process (the only one) and the tasks they watch.
        self._notices = ResultNotices()
        self._watched: set[str] = set()
        #: consumer -> what to call when a task it holds is asked to stop.
        self._cancel_listeners: dict[str, list[Callable[[str], None]]] = {}

    # -- submit ----------------------------------------------------------------

    def submit_many(self, specs: Sequence[TaskSpec], *, watch: bool = False) -> list[Submitted]:
        now = time.time()
        out: list[Submitted] = []
        with self._cond:
            self._purge(now)
            for spec in specs:
                key = spec.idempotency_key
                if key is not None and key in self._idempotency:
                    existing = self._tasks.get(self._idempotency[key])
                    if existing is not None:
                        first = existing.record
                        same = input_fingerprint(first.capability, first.payload)
                        if same == input_fingerprint(spec.capability, spec.payload):
                            out.append(first)
                        else:
                            out.append(IdempotencyKeyReused(key))
                        continue
                record = TaskRecord(
                    id=new_id(),
                    capability=spec.capability,
                    payload=dict(spec.payload),
                    status="pending",
                    priority=spec.priority,
                    max_attempts=spec.max_attempts,
                    idempotency_key=key,
                    created_at=now,
                    updated_at=now,
                    timeout_s=spec.timeout_s,
                    meta=dict(spec.meta),
                )
                self._seq += 1
                entry = _Entry(record, self._seq, now)
                self._tasks[record.id] = entry
                self._schedule(entry, now)
                if key is not None:
                    self._idempotency[key] = record.id
                out.append(record)
            if watch:
                tasks = [r for r in out if isinstance(r, TaskRecord)]
                self._notices.expect(r.id for r in tasks)
                self._watched.update(r.id for r in tasks if not r.done)
            self._cond.notify_all()
        return out

    # -- results -----------------------------------------------------------------

    def result_notices(self) -> ResultNotices:
        return self._notices

    def watch(self, task_ids: Sequence[str]) -> list[TaskStatus | None]:
        with self._cond:
            self._purge(time.time())
            out: list[TaskStatus | None] = []
            for task_id in task_ids:
                entry = self._tasks.get(task_id)
                out.append(None if entry is None else entry.record.status)
                if entry is not None and not entry.record.done:
                    self._watched.add(task_id)
            return out

    def _ended(self, record: TaskRecord, outcome: Any) -> None:
        """Tell this process's waiters that ``record`` ended (under the lock)."""
        if record.id in self._watched and record.status in FINAL_STATUSES:
            self._watched.discard(record.id)
            body: str | None = json.dumps(outcome)
            if body is not None and len(body) > INLINE_LIMIT:
                body = None  # as the other backends: too large to carry
            self._notices.deliver([Notice(record.id, record.status, record.attempts, body)])

    # -- claim -----------------------------------------------------------------

    def claim(self, options: ClaimOptions) -> list[Claim]:
        deadline = time.monotonic() + options.block_s
        with self._cond:
            while True:
                claims = self._claim_now(options)
                left = deadline - time.monotonic()
                if claims or left <= 0:
                    return claims
                self._cond.wait(min(left, 0.05))

    def ack_and_claim(
        self, items: Sequence[tuple[Claim, Any]], options: ClaimOptions
    ) -> list[Claim]:
        self.ack_many(items)
        return self.claim(options)

    def ended_by_claims(self) -> list[tuple[str, str]]:
        return self._ended_by_claims.drain()

    def _claim_now(self, options: ClaimOptions) -> list[Claim]:
        now = time.time()
        self._promote_due(now)
        receipt = new_id()
        claims: list[Claim] = []
        limit, vt, consumer = options.limit, options.visibility_timeout_s, options.consumer
        while len(claims) < limit:
            entry = self._pop_ready(options.capabilities)
            if entry is None:
                break
            if entry.record.cancel_requested_at is not None:
                # its worker let the lease run out after a cancel: it ends here
                self._end_cancelled(entry, now, CANCELLED_WORKER_GONE)
                self._ended_by_claims.add(entry.record.capability, "cancelled")
                continue
            attempts = entry.record.attempts + 1
            if attempts > entry.record.max_attempts:
                entry.record = replace(
                    entry.record,
                    status="dead",
                    error=worker_lost_error(attempts - 1),
                    updated_at=now,
                )
                entry.consumer = entry.receipt = None
                self._ended(entry.record, entry.record.error)
                self._ended_by_claims.add(entry.record.capability, "dead")
                continue
            entry.record = replace(
                entry.record, status="running", attempts=attempts, updated_at=now
            )
            entry.visible_at = now + vt
            entry.consumer = consumer
            entry.receipt = receipt
            self._schedule(entry, now)
            claims.append(Claim(task=entry.record, receipt=receipt, attempt=attempts))
        return claims

    # -- scheduling: where each active task waits to be claimed -----------------

    def _schedule(self, entry: _Entry, now: float) -> None:
        """File ``entry`` (just submitted or changed) where the next claim will find it.

        A new token makes the entry's older heap items stale. A lease always goes
        to the waiting heap, even one already expired (a zero visibility timeout):
        only the next claim may deliver it again, never the one that made it.
        """
        entry.token = next(self._tokens)
        if entry.record.status == "running" or entry.visible_at > now:
            heapq.heappush(self._waiting, (entry.visible_at, entry.token, entry))
        else:
            self._push_ready(entry)

    def _push_ready(self, entry: _Entry) -> None:
        rec = entry.record
        # expired leases first (the oldest work), then higher priority, then oldest
        key = (rec.status != "running", -rec.priority, entry.visible_at, entry.seq)
        heapq.heappush(self._ready.setdefault(rec.capability, []), (*key, entry.token, entry))

    def _promote_due(self, now: float) -> None:
        """Make claimable the leases that expired and the retries whose backoff is over."""
        waiting = self._waiting
        while waiting and waiting[0][0] <= now:
            _, token, entry = heapq.heappop(waiting)
            if _is_current(token, entry):
                self._push_ready(entry)

    def _pop_ready(self, caps: tuple[str, ...] | None) -> _Entry | None:
        """Take the next task to deliver among ``caps`` (every capability when None)."""
        best: list[_ReadyItem] | None = None
        for capability in self._ready if caps is None else caps:
            heap = self._ready.get(capability)
            while heap and not _is_current(heap[0][4], heap[0][5]):
                heapq.heappop(heap)
            if heap and (best is None or heap[0] < best[0]):
                best = heap
        return None if best is None else heapq.heappop(best)[5]

    # -- finish ----------------------------------------------------------------

    def ack_many(self, items: Sequence[tuple[Claim, Any]]) -> None:
        # Results are kept as JSON copies, like the other backends store them; one
        # that is not JSON raises before anything changes.
        results = [json.loads(json.dumps(result)) for _, result in items]
        now = time.time()
        with self._cond:
            for (claim, _), result in zip(items, results, strict=True):
                entry = self._tasks.get(claim.task.id)
                if entry is None or entry.record.status not in _ACTIVE:
                    continue
                entry.record = replace(
                    entry.record, status="succeeded", result=result, error=None, updated_at=now
                )
                entry.consumer = entry.receipt = None
                heapq.heappush(self._expiry, (now + self.options.result_ttl_s, claim.task.id))
                self._ended(entry.record, result)

    def fail(
        self,
        claim: Claim,
        error: Mapping[str, Any],
        *,
        retryable: bool,
        client_fault: bool = False,
    ) -> TaskStatus:
        now = time.time()
        with self._cond:
            entry = self._tasks.get(claim.task.id)
            if entry is None:
                return "dead"
            if entry.receipt != claim.receipt or entry.record.status != "running":
                return entry.record.status
            rec = entry.record
            entry.consumer = entry.receipt = None
            if rec.cancel_requested_at is not None:
                self._end_cancelled(entry, now, CANCELLED_WHILE_IT_RAN, cause=dict(error))
                return "cancelled"
            if client_fault:
                entry.record = replace(rec, status="failed", error=dict(error), updated_at=now)
                heapq.heappush(self._expiry, (now + self.options.result_ttl_s, rec.id))
                self._ended(entry.record, entry.record.error)
                return "failed"
            if retryable and rec.attempts < rec.max_attempts:
                entry.record = replace(rec, status="retrying", error=dict(error), updated_at=now)
                entry.visible_at = now + self.options.retry.delay_s(rec.attempts)
                self._schedule(entry, now)
                self._cond.notify_all()
                return "retrying"
            entry.record = replace(rec, status="dead", error=dict(error), updated_at=now)
            self._ended(entry.record, entry.record.error)
            return "dead"

    def extend_many(self, claims: Sequence[Claim], visibility_timeout_s: float) -> list[bool]:
        now = time.time()
        out: list[bool] = []
        with self._cond:
            for claim in claims:
                entry = self._tasks.get(claim.task.id)
                held = (
                    entry is not None
                    and entry.receipt == claim.receipt
                    and entry.record.status == "running"
                )
                if held and entry is not None:
                    entry.visible_at = now + visibility_timeout_s
                    self._schedule(entry, now)
                out.append(held)
        return out

    def release(self, claims: Sequence[Claim]) -> None:
        now = time.time()
        with self._cond:
            for claim in claims:
                entry = self._tasks.get(claim.task.id)
                if entry is None or entry.receipt != claim.receipt:
                    continue
                if entry.record.status != "running":
                    continue
                if entry.record.cancel_requested_at is not None:
                    self._end_cancelled(entry, now, CANCELLED_BEFORE_IT_RAN, given_back=True)
                    continue
                entry.record = replace(
                    entry.record,
                    status="pending",
                    attempts=max(0, entry.record.attempts - 1),
                    updated_at=now,
                )
                entry.visible_at = entry.record.created_at
                entry.consumer = entry.receipt = None
                self._schedule(entry, now)
            self._cond.notify_all()

    def recover(self, consumer: str) -> int:
        now = time.time()
        count = 0
        with self._cond:
            for entry in self._tasks.values():
                if entry.consumer == consumer and entry.record.status == "running":
                    count += 1
                    if entry.record.cancel_requested_at is not None:
                        self._end_cancelled(entry, now, CANCELLED_WORKER_GONE)
                        continue
                    entry.record = replace(entry.record, status="pending")
                    entry.visible_at = entry.record.created_at
                    entry.consumer = entry.receipt = None
                    self._schedule(entry, now)
            self._cond.notify_all()
        return count

    # -- cancelling ----------------------------------------------------------------

    def cancel(self, task_id: str) -> Cancellation | None:
        now = time.time()
        with self._cond:
            self._purge(now)
            entry = self._tasks.get(task_id)
            if entry is None:
                return None
            rec = entry.record
            if rec.done:
                return Cancellation("finished", rec)
            if rec.status != "running":
                cause = rec.error if rec.status == "retrying" else None
                entry.record = replace(rec, cancel_requested_at=now)
                self._end_cancelled(entry, now, CANCELLED_BEFORE_IT_RAN, cause=cause)
                return Cancellation("cancelled", entry.record)
            if rec.cancel_requested_at is None:
                entry.record = replace(rec, cancel_requested_at=now)
            listeners = list(self._cancel_listeners.get(entry.consumer or "", ()))
            answer = Cancellation("stopping", entry.record)
        for tell in listeners:
            tell(task_id)
        return answer

    def _end_cancelled(
        self,
        entry: _Entry,
        now: float,
        message: str,
        *,
        cause: Any = None,
        given_back: bool = False,
    ) -> None:
        """End ``entry``'s task ``cancelled`` (under the lock); ``given_back``: its worker
        gave it back unrun, so the delivery does not count as an attempt."""
        rec = entry.record
        entry.record = replace(
            rec,
            status="cancelled",
            attempts=max(0, rec.attempts - 1) if given_back else rec.attempts,
            error=cancelled_error(message, cause),
            updated_at=now,
            cancel_requested_at=rec.cancel_requested_at or now,
        )
        entry.consumer = entry.receipt = None
        heapq.heappush(self._expiry, (now + self.options.result_ttl_s, rec.id))
        self._ended(entry.record, entry.record.error)

    def cancel_requested(self, task_ids: Sequence[str]) -> set[str]:
        with self._cond:
            return {
                task_id
                for task_id in task_ids
                if (entry := self._tasks.get(task_id)) is not None
                and entry.record.cancel_requested_at is not None
            }

    def listen_for_cancels(
        self, consumer: str, on_cancel: Callable[[str], None]
    ) -> Callable[[], None]:
        with self._cond:
            self._cancel_listeners.setdefault(consumer, []).append(on_cancel)

        def stop() -> None:
            with self._cond:
                listeners = self._cancel_listeners.get(consumer, [])
                if on_cancel in listeners:
                    listeners.remove(on_cancel)

        return stop

    # -- dead letters ----------------------------------------------------------

    def redrive(self, task_id: str) -> DeadLetterChange | None:
        now = time.time()
        with self._cond:
            self._purge(now)
            entry = self._tasks.get(task_id)
            if entry is None:
                return None
            if entry.record.status != "dead":
                return DeadLetterChange(False, entry.record)
            self._redrive(entry, now)
            self._cond.notify_all()
            return DeadLetterChange(True, entry.record)

    def redrive_dead_letters(self, capability: str) -> int:
        now = time.time()
        with self._cond:
            dead = [e for e in self._tasks.values() if _is_dead_letter(e.record, capability)]
            for entry in dead:
                self._redrive(entry, now)
            self._cond.notify_all()
        return len(dead)

    def _redrive(self, entry: _Entry, now: float) -> None:
        """Back on the queue as if new, after what waits at its priority (under the lock)."""
        entry.record = replace(
            entry.record,
            status="pending",
            attempts=0,
            error=None,
            updated_at=now,
            cancel_requested_at=None,
        )
        entry.visible_at = now
        entry.consumer = entry.receipt = None
        self._schedule(entry, now)

    def purge_dead_letter(self, task_id: str) -> DeadLetterChange | None:
        with self._cond:
            self._purge(time.time())
            entry = self._tasks.get(task_id)
            if entry is None:
                return None
            if entry.record.status != "dead":
                return DeadLetterChange(False, entry.record)
            self._forget(entry.record)
            return DeadLetterChange(True, entry.record)

    def purge_dead_letters(self, capability: str) -> int:
        with self._cond:
            dead = [e.record for e in self._tasks.values() if _is_dead_letter(e.record, capability)]
            for record in dead:
                self._forget(record)
        return len(dead)

    def _forget(self, record: TaskRecord) -> None:
        """Delete a task, its events and its idempotency key (under the lock)."""
        del self._tasks[record.id]
        self._events.pop(record.id, None)
        self._watched.discard(record.id)
        key = record.idempotency_key
        if key is not None and self._idempotency.get(key) == record.id:
            del self._idempotency[key]

    # -- streaming events ------------------------------------------------------

    def publish_events(self, task_id: str, events: Sequence[Mapping[str, Any]]) -> None:
        if not events:
            return
        # a JSON round trip, as the other backends store them (and the same errors)
        copies = [json.loads(json.dumps(dict(event))) for event in events]
        with self._cond:
            stored = self._events.get(task_id, ([], 0.0))[0]
            stored.extend(copies)
            self._events[task_id] = (stored, time.time() + self.options.result_ttl_s)
            if task_id in self._watched:
                self._notices.deliver([Notice(task_id, "event", len(stored))])
            self._cond.notify_all()

    def read_events(
        self, task_id: str, after: int, *, block_s: float = 0.0, limit: int = 100
    ) -> list[tuple[int, Mapping[str, Any]]]:
        deadline = time.monotonic() + block_s
        start = max(0, after)
        with self._cond:
            while True:
                stored = self._events.get(task_id, ([], 0.0))[0]
                if len(stored) > start:
                    chunk = stored[start : start + max(1, limit)]
                    return [(start + i + 1, event) for i, event in enumerate(chunk)]
                left = deadline - time.monotonic()
                if left <= 0:
                    return []
                self._cond.wait(left)

    # -- inspect ---------------------------------------------------------------

    def get(self, task_id: str) -> TaskRecord | None:
        with self._cond:
            self._purge(time.time())
            entry = self._tasks.get(task_id)
            return None if entry is None else entry.record

    def stats(self) -> QueueStats:
        now = time.time()
        pending: dict[str, int] = {}
        backing_off: dict[str, int] = {}
        by_band: dict[str, dict[int, int]] = {}
        running = dead = 0
        oldest: float | None = None
        with self._cond:
            for entry in self._tasks.values():
                rec = entry.record
                if rec.status in ("pending", "retrying"):
                    pending[rec.capability] = pending.get(rec.capability, 0) + 1
                    bands = by_band.setdefault(rec.capability, {})
                    band = priority_band(rec.priority)
                    bands[band] = bands.get(band, 0) + 1
                    if rec.status == "retrying" and entry.visible_at > now:
                        backing_off[rec.capability] = backing_off.get(rec.capability, 0) + 1
                    else:  # ready for a worker since visible_at
                        since = entry.visible_at
                        oldest = since if oldest is None else min(oldest, since)
                elif rec.status == "running":
                    running += 1
                elif rec.status == "dead":
                    dead += 1
        age = 0.0 if oldest is None else max(0.0, now - oldest)
        return QueueStats(
            pending=pending,
            running=running,
            dead=dead,
            oldest_pending_age_s=age,
            pending_by_priority=by_band,
            backing_off=backing_off,
        )

    def dead_letters(self, limit: int = 100) -> list[TaskRecord]:
        with self._cond:
            dead = [e.record for e in self._tasks.values() if e.record.status == "dead"]
        dead.sort(key=lambda r: r.updated_at, reverse=True)
        return dead[:limit]

    def list_tasks(self, query: TaskQuery) -> TaskPage:
        """Newest first by submission number (``_Entry.seq``, the cursor)."""
        before = query.before
        found: list[_Entry] = []
        with self._cond:
            self._purge(time.time())
            for entry in reversed(self._tasks.values()):
                if before is not None and entry.seq >= before:
                    continue
                if _matches(entry.record, query):
                    found.append(entry)
                    if len(found) > query.limit:
                        break
        more = len(found) > query.limit
        page = found[: query.limit]
        return TaskPage(
            tuple(TaskSummary.of(e.record) for e in page),
            str(page[-1].seq) if more else None,
        )

    def ping(self) -> bool:
        return True

    def close(self) -> None:
        return None

    def _purge(self, now: float) -> None:
        # only acked and failed tasks expire, each once: the heap holds no stale items
        while self._expiry and self._expiry[0][0] < now:
            tid = heapq.heappop(self._expiry)[1]
            key = self._tasks.pop(tid).record.idempotency_key
            if key is not None and self._idempotency.get(key) == tid:
                del self._idempotency[key]
        for tid in [t for t, (_, until) in self._events.items() if until < now]:
            del self._events[tid]


def _matches(record: TaskRecord, query: TaskQuery) -> bool:
    meta = record.meta or {}
    return (
        (query.status is None or record.status == query.status)
        and (query.capability is None or record.capability == query.capability)
        and (query.caller is None or meta.get("caller") == query.caller)
    )


def _is_dead_letter(record: TaskRecord, capability: str) -> bool:
    return record.status == "dead" and record.capability == capability


def _is_current(token: int, entry: _Entry) -> bool:
    """Whether a heap item is the entry's newest and the task is still queued or running.

    Acks and dead letters leave the items of their tasks behind: those are dropped here.
    """
    return token == entry.token and entry.record.status in _ACTIVE
