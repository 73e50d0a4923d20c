"""From a client's request to a queued task: route, check, validate, submit.

Everything a call goes through before a worker sees it, independent of HTTP:
the router resolves the id (deprecated ids through their shims; unknown → 404,
retired → 410), a capability whose worker failed to load or is not ready is
refused (503), paused capabilities are refused (budget), the input is
validated against the target's schema (400 with JSON paths) and the queue's
bound is checked (429) — all *before* anything is queued.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from crank.errors import CrankError, ValidationFailed
from crank.manifest.findings import json_kind
from crank.runtime.broker_io import BrokerIO
from crank.runtime.brokers.contract import (
    IdempotencyKeyReused,
    TaskSpec,
    scoped_idempotency_key,
)
from crank.worker.validation import SchemaValidator

if TYPE_CHECKING:
    from collections.abc import Mapping

    from crank.manifest import Capability
    from crank.routing import Resolution, Router
    from crank.runtime.brokers.contract import Broker, TaskRecord
    from crank.runtime.status_tracker import StatusTracker
    from crank.runtime.worker_reports import WorkerHealth


class QueueFull(CrankError):
    """More tasks are pending than the server accepts (HTTP 429)."""


class CapabilityPaused(CrankError):
    """The daily LLM budget is spent and this capability is not essential (HTTP 503)."""


class WorkerUnavailable(CrankError):
    """The worker serving this capability failed to load or is not ready (HTTP 503)."""

    def __init__(self, capability_id: str, worker: WorkerHealth) -> None:
        if worker.state == "failed":
            why = f"its worker {worker.name!r} failed to load: {worker.reason}"
            hint = "fix the worker (its error is above) and restart crank run; /ready lists it"
        else:
            why = f"its worker {worker.name!r} is not ready: {worker.reason}"
            hint = "retry once /ready answers 200; the worker's check_readiness() decides"
        super().__init__(
            f"{capability_id} cannot be served: {why}", hint=hint, subject=capability_id
        )
        self.worker = worker


class SchemaUnusable(CrankError):
    """A capability's input schema cannot be checked here: Python's ``re`` or jsonschema
    refused it (an ECMA-262 ``pattern`` such as ``\\p{L}``) (HTTP 500: no retry helps)."""

    def __init__(self, capability_id: str, exc: Exception) -> None:
        super().__init__(
            f"the input schema of {capability_id} cannot be checked: "
            f"{type(exc).__name__}: {str(exc)[:200]}",
            hint="fix the capability's input schema in its crank.yaml (`crank lint` names "
            "the keyword, CRK107) and restart crank run; nothing was queued",
            subject=capability_id,
        )


@dataclass(frozen=True)
class PreparedCall:
    resolution: Resolution
    capability: Capability
    caller: str | None

    @property
    def target(self) -> str:
        return self.resolution.target


def _rooted(errors: list[dict[str, str]], where: str) -> list[dict[str, str]]:
    """``errors`` with their JSON paths (``$``, ``$.a``) moved under ``where``."""
    return [{**e, "path": where + str(e.get("path", "$"))[1:]} for e in errors]


class TaskGateway:
    def __init__(
        self,
        broker: Broker,
        router: Router,
        status: StatusTracker,
        *,
        max_pending: int,
        io: BrokerIO | None = None,
    ) -> None:
        self.broker = broker
        #: the one thread that talks to the broker for the requests of this process.
        self.io = io if io is not None else BrokerIO(broker, on_submitted=status.note_submitted)
        self._stats_read: asyncio.Future[Any] | None = None
        self.router = router
        self.status = status
        self.max_pending = max_pending
        self._validators: dict[str, SchemaValidator] = {}
        self._lock = threading.Lock()

    def validator(self, capability: Capability) -> SchemaValidator:
        """The capability's input validator: compiled where it can be, jsonschema's words."""
        with self._lock:
            found = self._validators.get(capability.id)
            if found is None:
                found = self._validators[capability.id] = SchemaValidator(capability.input)
            return found

    def prepare(
        self,
        capability_ref: str,
        payload: Any,
        *,
        caller: str | None = None,
        where: str = "$",
    ) -> PreparedCall:
        """Resolve and validate (CapabilityNotFound/Gone, CapabilityPaused, ValidationFailed).

        ``where`` is the JSON path of the input in the request (``$.input`` in a task
        envelope): every reported problem's path starts there.

        Runs on the event loop: CPU only, the budget read from its cache (refreshed on a
        thread when stale).
        """
        if not isinstance(payload, dict):
            raise ValidationFailed(
                f"input for {capability_ref} must be a JSON object",
                hint="send the capability's input as a JSON object",
                errors=[{"path": where, "message": f"{json_kind(payload)}, not an object"}],
                subject=capability_ref,
            )
        try:
            resolution = self.router.resolve(capability_ref, payload, caller=caller)
        except ValidationFailed as exc:  # a shim that cannot choose a successor
            errors = _rooted(exc.errors, where)
            raise ValidationFailed(
                exc.message, hint=exc.hint, errors=errors, subject=exc.subject
            ) from None
        capability = resolution.route.capability
        broken = self.status.unavailable(resolution.target)
        if broken is not None:
            raise WorkerUnavailable(resolution.target, broken)
        if resolution.target in self.status.paused(wait=False):
            raise CapabilityPaused(
                f"capability {resolution.target} is paused: today's LLM budget is spent and it "
                "is not essential",
                hint="retry after midnight UTC, or raise CRANK_DAILY_BUDGET_USD",
                subject=resolution.target,
            )
        try:
            found = self.validator(capability).errors(resolution.payload)
        except Exception as exc:  # CPU only: a failure here is the schema's, not the broker's
            raise SchemaUnusable(resolution.target, exc) from exc
        errors = _rooted(found, where)
        if errors:
            raise ValidationFailed(
                f"input for {resolution.target} is invalid: "
                f"{errors[0]['path']}: {errors[0]['message']}",
                hint="match the capability's input schema (GET /v1/capabilities shows it)",
                errors=errors,
                subject=resolution.target,
            )
        return PreparedCall(resolution, capability, caller)

    def task_spec(
        self,
        call: PreparedCall,
        *,
        priority: int = 0,
        idempotency_key: str | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> TaskSpec:
        """The task to queue for ``call``; QueueFull when the queue is at its bound
        (counted from the status cache: :meth:`refresh_stats` keeps it fresh)."""
        if self.status.pending_total(wait=False) >= self.max_pending:
            raise QueueFull(
                f"{self.max_pending} tasks are already pending",
                hint="retry later; the server sheds load instead of queueing without bound",
            )
        return TaskSpec(
            capability=call.target,
            payload=call.resolution.payload,
            priority=priority,
            max_attempts=call.capability.max_attempts,
            # a key names a request of one caller: another caller's same key is another key
            idempotency_key=(
                None
                if idempotency_key is None
                else scoped_idempotency_key(call.caller, idempotency_key)
            ),
            timeout_s=call.capability.timeout_s,
            meta={
                "requested": call.resolution.requested,
                "caller": call.caller,
                **dict(meta or {}),
            },
        )

    async def refresh_stats(self) -> None:
        """Keep the cached queue stats (the pending bound's count) fresh without making
        requests wait for them: stale ones are read again on a thread of their own, not
        the broker I/O thread (counting a deep queue takes a while: the submits queued
        behind it waited), and only a request that the cached count would refuse waits
        for that read, so a refusal is always made on a fresh count. The cached count
        is never low (see ``StatusTracker.pending_total``). Concurrent requests share
        one read.

        A count that reaches the bound only by the submits made while it was read
        (perhaps counted twice) is read again, at most twice, before it refuses."""
        if self.status.stats_stale():
            read = self._read_stats(fresh=False)
            if self.status.pending_total(wait=False) >= self.max_pending:
                await asyncio.shield(read)
        for _ in range(2):
            if not self.status.pending_in_doubt(self.max_pending):
                return
            await asyncio.shield(self._read_stats(fresh=True))

    def _read_stats(self, *, fresh: bool) -> asyncio.Future[Any]:
        """The stats read under way, or a new one (on a thread: see refresh_stats)."""
        if self._stats_read is None or self._stats_read.done():
            read = functools.partial(self.status.queue_stats, fresh=fresh)
            self._stats_read = asyncio.ensure_future(asyncio.to_thread(read))
        return self._stats_read

    async def submit(self, spec: TaskSpec, *, watch: bool = False) -> TaskRecord:
        """Queue ``spec`` through the I/O thread, grouped with concurrent submits
        (IdempotencyKeyReused when the caller's key is bound to another capability or
        input). ``watch=True``: this process is told when it ends."""
        submitted = await self.io.submit(spec, watch=watch)
        if isinstance(submitted, IdempotencyKeyReused):
            raise submitted
        return submitted


__all__ = [
    "CapabilityPaused",
    "PreparedCall",
    "QueueFull",
    "SchemaUnusable",
    "TaskGateway",
    "WorkerUnavailable",
]
