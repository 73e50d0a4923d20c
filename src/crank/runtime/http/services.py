"""What the HTTP handlers use, wired together once: broker, router, status, metrics, gateway."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from crank import __version__
from crank.runtime.concurrency import CallAdmission
from crank.runtime.gateway import TaskGateway
from crank.runtime.http.limits import InflightLimiter
from crank.runtime.metrics import ServerMetrics
from crank.runtime.status_tracker import StatusTracker, budget_announcer

if TYPE_CHECKING:
    from crank.routing import Router
    from crank.runtime.brokers.contract import Broker
    from crank.runtime.config import RuntimeConfig


#: distinct callers counted by name in ``crank_deprecated_calls_total``; the rest are "other".
MAX_CALLER_LABELS = 200


@dataclass
class RuntimeServices:
    """What the handlers use; built once by :func:`build_services` or by tests."""

    config: RuntimeConfig
    broker: Broker
    router: Router
    status: StatusTracker
    metrics: ServerMetrics
    gateway: TaskGateway
    limiter: InflightLimiter = field(default_factory=lambda: InflightLimiter(64))
    #: max_concurrency of synchronous and streaming calls.
    admission: CallAdmission = field(default_factory=lambda: CallAdmission({}))
    #: the version ``/openapi.json`` states.
    version: str = __version__
    #: the key console sessions are signed with, when the processes serving HTTP share
    #: one (None: derived from the API token, else random to this process).
    session_key: bytes | None = field(default=None, repr=False)


def build_services(
    config: RuntimeConfig,
    broker: Broker,
    router: Router,
    *,
    status: StatusTracker | None = None,
    metrics: ServerMetrics | None = None,
    admission: CallAdmission | None = None,
) -> RuntimeServices:
    """Wire the router, broker, status tracker and metrics together."""
    if status is None:
        non_essential = [r.capability_id for r in router.routes() if not r.capability.essential]
        status = StatusTracker(
            broker,
            min_workers=config.min_workers,
            daily_budget_usd=config.daily_budget_usd,
            budget_warn_ratio=config.budget_warn_ratio,
            non_essential=non_essential,
        )
    if metrics is None:
        metrics = ServerMetrics(
            status.snapshot,
            status.budget,
            multiprocess_dir=config.metrics_dir,
            capabilities=[r.capability_id for r in router.routes()],
        )
    server_metrics = metrics
    status.on_budget_level = budget_announcer(
        lambda level: server_metrics.budget_alerts.labels(level).inc()
    )
    status.batches = server_metrics.batches

    callers: set[str] = set()

    def count_deprecated(capability_id: str, caller: str) -> None:
        # A label value per caller, but never more than MAX_CALLER_LABELS of them.
        if caller not in callers and len(callers) >= MAX_CALLER_LABELS:
            caller = "other"
        else:
            callers.add(caller)
        server_metrics.deprecated_calls.labels(capability_id, caller).inc()

    router.on_deprecated_call.append(count_deprecated)
    gateway = TaskGateway(broker, router, status, max_pending=config.max_pending_tasks)
    return RuntimeServices(
        config=config,
        broker=broker,
        router=router,
        status=status,
        metrics=metrics,
        gateway=gateway,
        limiter=InflightLimiter(config.max_inflight_requests),
        admission=admission if admission is not None else CallAdmission(manifest_limits(router)),
    )


def manifest_limits(router: Router) -> dict[str, int]:
    """capability id -> ``max_concurrency`` as the manifests declare it."""
    return {
        r.capability_id: r.capability.max_concurrency
        for r in router.routes()
        if r.capability.max_concurrency is not None
    }


__all__ = [
    "MAX_CALLER_LABELS",
    "RuntimeServices",
    "build_services",
    "manifest_limits",
]
