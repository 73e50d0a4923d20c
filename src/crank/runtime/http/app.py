"""Assemble the Starlette application from the runtime's services."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from crank.runtime.http.limits import InflightLimiter

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from crank.routing import Router
    from crank.runtime.brokers.contract import Broker
    from crank.runtime.config import RuntimeConfig
    from crank.runtime.gateway import TaskGateway
    from crank.runtime.metrics import ServerMetrics
    from crank.runtime.status_tracker import StatusTracker


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
    openapi: dict[str, Any] = field(default_factory=dict)
    limiter: InflightLimiter = field(default_factory=lambda: InflightLimiter(64))


def build_services(
    config: RuntimeConfig,
    broker: Broker,
    router: Router,
    *,
    status: StatusTracker | None = None,
    metrics: ServerMetrics | None = None,
) -> RuntimeServices:
    """Wire the router, broker, status tracker and metrics together."""
    from crank.runtime.gateway import TaskGateway
    from crank.runtime.http.openapi import build_openapi
    from crank.runtime.logs import get_logger
    from crank.runtime.metrics import ServerMetrics
    from crank.runtime.status_tracker import StatusTracker

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
        metrics = ServerMetrics(status.snapshot, status.budget, multiprocess_dir=config.metrics_dir)
    log = get_logger("crank.runtime.budget")

    def announce(state: Any) -> None:
        metrics.budget_alerts.labels(state.level).inc()
        doc = state.as_dict()
        log.warning("llm_budget", budget_level=doc.pop("level"), **doc)

    status.on_budget_level = announce

    callers: set[str] = set()

    def count_deprecated(capability_id: str, caller: str) -> None:
        # A label value per caller, but never more than MAX_CALLER_LABELS of them.
        if caller not in callers and len(callers) >= MAX_CALLER_LABELS:
            caller = "other"
        else:
            callers.add(caller)
        metrics.deprecated_calls.labels(capability_id, caller).inc()

    router.on_deprecated_call.append(count_deprecated)
    gateway = TaskGateway(broker, router, status, max_pending=config.max_pending_tasks)
    from crank import __version__ as crank_version

    return RuntimeServices(
        config=config,
        broker=broker,
        router=router,
        status=status,
        metrics=metrics,
        gateway=gateway,
        openapi=build_openapi(router, version=crank_version, secured=config.api_token is not None),
        limiter=InflightLimiter(config.max_inflight_requests),
    )


def create_app(services: RuntimeServices) -> Starlette:
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.routing import Route

    from crank.runtime.http.guard import GuardMiddleware
    from crank.runtime.http.routes import Handlers

    h = Handlers(services)
    legacy = services.router.legacy_routes()
    routes = [
        Route("/health", h.health, methods=["GET"]),
        Route("/ready", h.ready, methods=["GET"]),
        Route("/metrics", h.metrics, methods=["GET"]),
        Route("/openapi.json", h.openapi, methods=["GET"]),
        Route("/v1/status", h.status, methods=["GET"]),
        Route("/v1/capabilities", h.capabilities, methods=["GET"]),
        Route("/v1/capabilities/{capability_id}", h.call_capability, methods=["POST"]),
        Route("/v1/tasks", h.submit_task, methods=["POST"]),
        Route("/v1/tasks/{task_id}", h.get_task, methods=["GET"]),
        Route("/v1/tasks/{task_id}/events", h.task_events, methods=["GET"]),
        *(Route(path, h.legacy, methods=["POST"]) for path in legacy),
    ]
    known = frozenset({"/openapi.json", "/v1/status", "/v1/capabilities", "/v1/tasks", *legacy})
    middleware = [
        Middleware(
            GuardMiddleware,
            token=services.config.api_token,
            limiter=services.limiter,
            max_body_bytes=services.config.max_body_bytes,
            metrics=services.metrics,
            known_paths=known,
        )
    ]
    app = Starlette(routes=routes, middleware=middleware)
    app.state.services = services
    return app


__all__ = ["RuntimeServices", "build_services", "create_app"]
