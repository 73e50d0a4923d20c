"""``.env.example``: every variable the worker reads, secrets left empty."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

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
        "CRANK_BROKER",
        "Task broker URL (sqlite:///file.db or redis://host:6379/0)",
        "sqlite:///crank-queue.db",
    ),
    EnvEntry("CRANK_LOG_LEVEL", "Log level: DEBUG, INFO, WARNING, ERROR", "INFO"),
    EnvEntry(
        "CRANK_API_TOKEN", "Bearer token required on every route but /health", "", secret=True
    ),
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
    return entries + [e for e in RUNTIME_ENV if e.name not in declared]


def env_context(project: WorkerProject) -> Mapping[str, Any]:
    return {"env_vars": env_entries(project)}


ENV_EXAMPLE = TemplateRenderer(
    name="env",
    description=".env.example listing the manifest's worker.env and crank's CRANK_* variables.",
    files=((".env.example", "env.example.j2"),),
    context_extra=env_context,
)
