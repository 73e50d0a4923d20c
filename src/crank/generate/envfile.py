"""``.env.example``: every variable the worker reads, secrets left empty.

Values are written so that docker compose (``env_file``) and a POSIX shell read them
back as written: plain when they hold no character either treats specially, else
single-quoted, else (a quote or a line break in them) double-quoted with escapes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from crank.generate.context import shutdown
from crank.generate.render import TemplateRenderer

if TYPE_CHECKING:
    from collections.abc import Mapping

    from crank.generate.project import WorkerProject


#: Characters a value may hold unquoted: neither compose nor a shell treats them specially.
_PLAIN = re.compile(r"[A-Za-z0-9_./:@,+=%-]*")
_DOUBLE_QUOTED_ESCAPES = {"\\": "\\\\", '"': '\\"', "$": "\\$", "\n": "\\n", "\r": "\\r"}


def dotenv_value(value: str) -> str:
    """``value`` as the right-hand side of a ``.env`` line that reads back as ``value``."""
    if _PLAIN.fullmatch(value):
        return value
    if "'" not in value and "\n" not in value and "\r" not in value:
        return f"'{value}'"
    return '"' + "".join(_DOUBLE_QUOTED_ESCAPES.get(c, c) for c in value) + '"'


@dataclass(frozen=True)
class EnvEntry:
    name: str
    description: str
    value: str
    required: bool = False
    secret: bool = False

    @property
    def comment_lines(self) -> list[str]:
        """The description as comment lines (each line of it, then the flags)."""
        flags = (" (required)" if self.required else "") + (" (secret)" if self.secret else "")
        lines = [line.rstrip() for line in (self.description.strip() or self.name).splitlines()]
        lines[-1] += flags
        return [f"# {line}".rstrip() for line in lines]

    @property
    def assignment(self) -> str:
        return f"{self.name}={dotenv_value(self.value)}"


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
    EnvEntry(
        "CRANK_LOG_FORMAT",
        "Log lines: json, console (readable) or auto (the default: console on a terminal)",
        "",
    ),
    EnvEntry(
        "CRANK_ACCESS_LOG",
        "A log line per HTTP request: on (the default), errors (status 400 and above) or off",
        "",
    ),
    EnvEntry(
        "CRANK_UI",
        "The operator console at /ui: on (the default), readonly or off",
        "",
    ),
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
    EnvEntry(
        "CRANK_REPLACE_UNLIVE_S",
        "Seconds a worker process may stay not live before it is replaced (0: never)",
        "",
    ),
    EnvEntry(
        "CRANK_MAX_CONCURRENCY",
        "Calls of a capability running at once, over the manifest's max_concurrency:"
        " CAPABILITY=N,...",
        "",
    ),
    EnvEntry("CRANK_DAILY_BUDGET_USD", "Daily LLM budget (pauses non-essential capabilities)", ""),
    EnvEntry(
        "CRANK_USAGE_DB",
        "SQLite file where LLM usage is added up across processes (default crank-usage.db)",
        "",
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
