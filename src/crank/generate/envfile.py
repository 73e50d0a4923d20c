"""``.env.example``: every variable the worker reads, secrets left empty."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from crank.generate.context import shutdown
from crank.generate.render import TemplateRenderer

if TYPE_CHECKING:
    from collections.abc import Mapping

    from crank.generate.project import WorkerProject


@dataclass(frozen=True)
class EnvEntry:
    name: str
    description: str
    value: str
    required: bool = False
    secret: bool = False


#: Variables crank's runtime reads in every worker container.
RUNTIME_ENV: tuple[EnvEntry, ...] = (
    EnvEntry(
        "CRANK_BROKER_URL",
        "Task broker URL (sqlite:///file.db or redis://host:6379/0)",
        "sqlite:///crank-queue.db",
    ),
    EnvEntry(
        "CRANK_API_TOKEN",
        "Bearer token required on every route but /health, /ready and /metrics",
        "",
        secret=True,
    ),
    EnvEntry("CRANK_LOG_MODE", "Log format: prod (JSON) or dev (readable)", "prod"),
    EnvEntry("CRANK_MAX_PENDING", "Queued tasks accepted before answering 429", ""),
    EnvEntry("CRANK_MAX_INFLIGHT", "Concurrent HTTP requests before answering 429", ""),
    EnvEntry(
        "CRANK_HTTP_PROCESSES",
        "Processes serving the HTTP port: a number (1: the default) or auto, one per CPU"
        " the container may use",
        "",
    ),
    EnvEntry("CRANK_MAX_BODY_BYTES", "Largest request body accepted", ""),
    EnvEntry("CRANK_GRACE_S", "Seconds in-flight tasks may run after SIGTERM", "10"),
    EnvEntry("CRANK_DAILY_BUDGET_USD", "Daily LLM budget (pauses non-essential capabilities)", ""),
    EnvEntry("CRANK_DISABLE_PLUGINS", "Comma-separated plugin names crank must not load", ""),
)


def env_entries(project: WorkerProject) -> list[EnvEntry]:
    entries = [
        EnvEntry(
            var.name,
            var.description,
            "" if var.secret else (var.default or ""),
            required=var.required,
            secret=var.secret,
        )
        for var in project.manifest.worker.env
    ]
    declared = {e.name for e in entries}

    grace = str(shutdown(project).grace_s)
    runtime = [
        EnvEntry(e.name, e.description + " (the longest capability timeout_s)", grace)
        if e.name == "CRANK_GRACE_S"
        else e
        for e in RUNTIME_ENV
    ]
    return entries + [e for e in runtime if e.name not in declared]


def env_context(project: WorkerProject) -> Mapping[str, Any]:
    return {"env_vars": env_entries(project)}


ENV_EXAMPLE = TemplateRenderer(
    name="env",
    description=".env.example listing the manifest's worker.env and crank's CRANK_* variables.",
    files=((".env.example", "env.example.j2"),),
    context_extra=env_context,
)
