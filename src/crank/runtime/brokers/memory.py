"""An in-process broker with the full semantics, for tests and single-process use."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from crank.runtime.broker import Claim, QueueStats, TaskRecord, TaskSpec, TaskStatus
from crank.runtime.brokers.common import BatchBroker, BrokerOptions, new_id, worker_lost_error

if TYPE_CHECKING:
    from collections.abc import Collection, Mapping, Sequence

_ACTIVE = frozenset({"pending", "retrying", "running"})


@dataclass
class _Entry:
    record: TaskRecord
    seq: int
    visible_at: float
    consumer: str | None = None
    receipt: str | None = None
    expires_at: float | None = None


class MemoryBroker(BatchBroker):
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
        self._cond = threading.Condition()
        #: task id -> (its events, when they expire); see :meth:`publish_events`.
        self._events: dict[str, tuple[list[Mapping[str, Any]], float]] = {}

    # -- submit ----------------------------------------------------------------

    def submit_many(self, specs: Sequence[TaskSpec]) -> list[TaskRecord]:
        now = time.time()
        out: list[TaskRecord] = []
        with self._cond:
            self._purge(now)
            for spec in specs:
                key = spec.idempotency_key
                if key is not None and key in self._idempotency:
                    existing = self._tasks.get(self._idempotency[key])
                    if existing is not None:
                        out.append(existing.record)
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
                self._tasks[record.id] = _Entry(record, self._seq, now)
                if key is not None:
                    self._idempotency[key] = record.id
                out.append(record)
            self._cond.notify_all()
        return out

    # -- claim -----------------------------------------------------------------

    def claim(
        self,
        consumer: str,
        *,
        capabilities: Collection[str] | None = None,
        limit: int = 1,
        visibility_timeout_s: float = 30.0,
        block_s: float = 0.0,
    ) -> list[Claim]:
        deadline = time.monotonic() + block_s
        caps = None if capabilities is None else frozenset(capabilities)
        with self._cond:
            while True:
                claims = self._claim_now(consumer, caps, limit, visibility_timeout_s)
                left = deadline - time.monotonic()
                if claims or left <= 0:
                    return claims
                self._cond.wait(min(left, 0.05))

    def ack_and_claim(
        self,
        items: Sequence[tuple[Claim, Any]],
        consumer: str,
        *,
        capabilities: Collection[str] | None = None,
        limit: int = 1,
        visibility_timeout_s: float = 30.0,
        block_s: float = 0.0,
    ) -> list[Claim]:
        self.ack_many(items)
        return self.claim(
            consumer,
            capabilities=capabilities,
            limit=limit,
            visibility_timeout_s=visibility_timeout_s,
            block_s=block_s,
        )

    def _claim_now(
        self, consumer: str, caps: frozenset[str] | None, limit: int, vt: float
    ) -> list[Claim]:
        now = time.time()
        ready = sorted(
            (
                e
                for e in self._tasks.values()
                if e.record.status in _ACTIVE
                and e.visible_at <= now
                and (caps is None or e.record.capability in caps)
            ),
            # expired leases first (the oldest work), then higher priority, then oldest
            key=lambda e: (e.record.status != "running", -e.record.priority, e.visible_at, e.seq),
        )
        receipt = new_id()
        claims: list[Claim] = []
        for entry in ready:
            if len(claims) >= limit:
                break
            attempts = entry.record.attempts + 1
            if attempts > entry.record.max_attempts:
                entry.record = replace(
                    entry.record,
                    status="dead",
                    error=worker_lost_error(attempts - 1),
                    updated_at=now,
                )
                entry.consumer = entry.receipt = None
                continue
            entry.record = replace(
                entry.record, status="running", attempts=attempts, updated_at=now
            )
            entry.visible_at = now + vt
            entry.consumer = consumer
            entry.receipt = receipt
            claims.append(Claim(task=entry.record, receipt=receipt, attempt=attempts))
        return claims

    # -- finish ----------------------------------------------------------------

    def ack_many(self, items: Sequence[tuple[Claim, Any]]) -> None:
        now = time.time()
        with self._cond:
            for claim, result in items:
                entry = self._tasks.get(claim.task.id)
                if entry is None or entry.record.status not in _ACTIVE:
                    continue
                entry.record = replace(
                    entry.record, status="succeeded", result=result, error=None, updated_at=now
                )
                entry.consumer = entry.receipt = None
                entry.expires_at = now + self.options.result_ttl_s

    def fail(self, claim: Claim, error: Mapping[str, Any], *, retryable: bool) -> TaskStatus:
        now = time.time()
        with self._cond:
            entry = self._tasks.get(claim.task.id)
            if entry is None:
                return "dead"
            if entry.receipt != claim.receipt or entry.record.status != "running":
                return entry.record.status
            rec = entry.record
            entry.consumer = entry.receipt = None
            if retryable and rec.attempts < rec.max_attempts:
                entry.record = replace(rec, status="retrying", error=dict(error), updated_at=now)
                entry.visible_at = now + self.options.retry.delay_s(rec.attempts)
                self._cond.notify_all()
                return "retrying"
            entry.record = replace(rec, status="dead", error=dict(error), updated_at=now)
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
                entry.record = replace(
                    entry.record,
                    status="pending",
                    attempts=max(0, entry.record.attempts - 1),
                    updated_at=now,
                )
                entry.visible_at = entry.record.created_at
                entry.consumer = entry.receipt = None
            self._cond.notify_all()

    def recover(self, consumer: str) -> int:
        count = 0
        with self._cond:
            for entry in self._tasks.values():
                if entry.consumer == consumer and entry.record.status == "running":
                    entry.record = replace(entry.record, status="pending")
                    entry.visible_at = entry.record.created_at
                    entry.consumer = entry.receipt = None
                    count += 1
            self._cond.notify_all()
        return count

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
        running = dead = 0
        oldest: float | None = None
        with self._cond:
            for entry in self._tasks.values():
                rec = entry.record
                if rec.status in ("pending", "retrying"):
                    pending[rec.capability] = pending.get(rec.capability, 0) + 1
                    oldest = rec.created_at if oldest is None else min(oldest, rec.created_at)
                elif rec.status == "running":
                    running += 1
                elif rec.status == "dead":
                    dead += 1
        age = 0.0 if oldest is None else max(0.0, now - oldest)
        return QueueStats(pending=pending, running=running, dead=dead, oldest_pending_age_s=age)

    def dead_letters(self, limit: int = 100) -> list[TaskRecord]:
        with self._cond:
            dead = [e.record for e in self._tasks.values() if e.record.status == "dead"]
        dead.sort(key=lambda r: r.updated_at, reverse=True)
        return dead[:limit]

    def ping(self) -> bool:
        return True

    def close(self) -> None:
        return None

    def _purge(self, now: float) -> None:
        expired = [
            tid for tid, e in self._tasks.items() if e.expires_at is not None and e.expires_at < now
        ]
        for tid in expired:
            key = self._tasks.pop(tid).record.idempotency_key
            if key is not None and self._idempotency.get(key) == tid:
                del self._idempotency[key]
        for tid in [t for t, (_, until) in self._events.items() if until < now]:
            del self._events[tid]
