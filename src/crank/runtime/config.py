"""The configuration ``crank run`` runs with: flags over environment over manifests.

Environment variables (all optional):

* ``CRANK_BROKER_URL``: broker URL (default ``sqlite:///crank-queue.db``);
* ``CRANK_API_TOKEN``: bearer token required on every endpoint but health/ready/metrics;
* ``CRANK_DAILY_BUDGET_USD``: daily LLM budget; warns at 80 %, pauses non-essential
  capabilities at 100 %;
* ``CRANK_MAX_PENDING``, ``CRANK_MAX_INFLIGHT``, ``CRANK_MAX_BODY_BYTES``: overload bounds;
* ``CRANK_GRACE_S``: how long in-flight tasks may run after SIGTERM;
* ``CRANK_REPLACE_UNLIVE_S``: how long a worker process may stay not live before the
  supervisor replaces it (default 20 s; 0: never, an outside probe decides);
* ``CRANK_HTTP_PROCESSES``: processes serving the HTTP port (default 1), or ``auto``: one
  per CPU this process may use (:mod:`crank.runtime.cpus`);
* ``CRANK_UI``: the operator console at ``/ui``: ``on`` (default), ``readonly`` (pages
  without actions; actions refused) or ``off`` (not served);
* ``CRANK_ACCESS_LOG``: the server's line per request: ``on`` (default), ``errors``
  (answers of status 400 and above only) or ``off``.
* ``CRANK_RESULT_SAFETY_POLL_S``: how often a wait for a result that heard no notice
  reads the task anyway (default 1 s; :mod:`crank.runtime.brokers.contract`).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from crank.errors import UsageError
from crank.runtime.brokers.common import url_without_password
from crank.runtime.brokers.contract import SAFETY_POLL_ENV, SAFETY_POLL_S
from crank.runtime.cpus import usable_cpus
from crank.runtime.scaling import ScalingConfig

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from crank.manifest import Manifest

Mode = Literal["dev", "prod"]
#: The operator console: served with its actions, served read-only, or not served.
ConsoleMode = Literal["on", "readonly", "off"]
CONSOLE_MODES: tuple[ConsoleMode, ...] = ("on", "readonly", "off")
AccessLogMode = Literal["on", "errors", "off"]
ACCESS_LOG_MODES: tuple[AccessLogMode, ...] = ("on", "errors", "off")

DEFAULT_BROKER_URL = "sqlite:///crank-queue.db"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
#: The dev pool is fixed and small: at most this many worker processes.
DEV_MAX_WORKERS = 2
#: the most processes ``crank run`` serves its HTTP port with.
MAX_HTTP_PROCESSES = 64
#: what ``--http-processes`` / ``CRANK_HTTP_PROCESSES`` take for one per usable CPU.
AUTO = "auto"
#: seconds a worker process may stay not live before it is replaced: past a pause that
#: ends by itself (a long collection, a slow disk), and before a liveness probe of
#: ``/health`` restarts the whole pod (the generated one: after 3 failures 15 s apart,
#: at least 30 s), healthy processes included.
DEFAULT_REPLACE_UNLIVE_S = 20.0


def auto_http_processes(text: str) -> int | None:
    """What ``auto`` comes to when ``text`` says it (any case, spaces around): one HTTP
    process per CPU this process may use (affinity, cgroup quotas); else None."""
    if text.strip().lower() != AUTO:
        return None
    return min(usable_cpus(), MAX_HTTP_PROCESSES)


#: the overload bounds: field, the environment variable that sets it, what it bounds.
_OVERLOAD_BOUNDS = (
    ("max_inflight_requests", "CRANK_MAX_INFLIGHT", "number of HTTP requests served at once"),
    ("max_pending_tasks", "CRANK_MAX_PENDING", "number of queued tasks accepted"),
    ("max_body_bytes", "CRANK_MAX_BODY_BYTES", "largest request body accepted, in bytes"),
)


@dataclass(frozen=True)
class RuntimeConfig:
    """Everything the supervisor and the HTTP app need to know."""

    broker_url: str = DEFAULT_BROKER_URL
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    mode: Mode = "prod"
    manifest_paths: tuple[Path, ...] = ()
    min_workers: int = 1
    max_workers: int = 4
    target_queue_per_worker: int = 10
    api_token: str | None = field(default=None, repr=False)
    #: requests being served at once; the next one gets 429.
    max_inflight_requests: int = 64
    #: pending tasks in the queue; a submit beyond it gets 429.
    max_pending_tasks: int = 10_000
    max_body_bytes: int = 1_048_576
    #: seconds in-flight tasks may still run after SIGTERM before they are returned.
    grace_s: float = 10.0
    #: a worker process not live this long without a break is stopped and replaced
    #: (0: never; ``--replace-unlive-after``, ``CRANK_REPLACE_UNLIVE_S``).
    replace_unlive_s: float = DEFAULT_REPLACE_UNLIVE_S
    #: how often the supervisor checks children and takes a scaling decision.
    monitor_interval_s: float = 0.5
    scale_interval_s: float = 5.0
    daily_budget_usd: float | None = None
    budget_warn_ratio: float = 0.8
    #: where LLM usage is persisted for every process to add to (SQLite).
    usage_db: Path = Path("crank-usage.db")
    #: Prometheus multiprocess directory for worker processes' metrics (None: a temp dir).
    metrics_dir: Path | None = None
    worker_batch_size: int = 8
    visibility_timeout_s: float = 30.0
    #: how often each worker process runs its workers' readiness and liveness checks.
    health_interval_s: float = 2.0
    #: extra environment for worker processes (PYTHONPATH of named workers...).
    worker_env: Mapping[str, str] = field(default_factory=dict)
    #: the operator console at ``/ui`` (``CRANK_UI``).
    ui: ConsoleMode = "on"
    #: which requests get an access log line (``CRANK_ACCESS_LOG``).
    access_log: AccessLogMode = "on"
    #: processes serving the HTTP port (``--http-processes``, ``CRANK_HTTP_PROCESSES``);
    #: more than one: the supervisor runs in a process of its own (docs/runtime.md).
    http_processes: int = 1

    def __post_init__(self) -> None:
        if self.mode not in ("dev", "prod"):
            raise UsageError(f"mode {self.mode!r} is not dev or prod", hint="use --mode dev|prod")
        # max_workers 0 (with min 0): no local pool, the API only (workers run elsewhere).
        if self.min_workers < 0 or self.min_workers > self.max_workers:
            raise UsageError(
                f"worker bounds are inconsistent: --min-workers {self.min_workers} "
                f"--max-workers {self.max_workers}",
                hint="use 0 <= --min-workers <= --max-workers (--max-workers 0: HTTP API only)",
            )
        if self.mode == "dev" and self.min_workers == 0 < self.max_workers:
            # dev never scales: its pool is min_workers processes, here none, while
            # tasks would be accepted that nothing here runs and /ready said ready
            raise UsageError(
                "--mode dev keeps a fixed pool: --min-workers 0 would start no worker "
                "process, and tasks would wait forever",
                hint="use --mode prod to scale to zero, or --max-workers 0 for the HTTP API "
                "alone (workers elsewhere)",
            )
        if self.ui not in CONSOLE_MODES:
            raise UsageError(
                f"console mode {self.ui!r} is not one of {', '.join(CONSOLE_MODES)}",
                hint="set CRANK_UI to on, readonly or off",
                subject="CRANK_UI",
            )
        if self.access_log not in ACCESS_LOG_MODES:
            raise UsageError(
                f"access log mode {self.access_log!r} is not one of {', '.join(ACCESS_LOG_MODES)}",
                hint="set CRANK_ACCESS_LOG to on, errors or off",
                subject="CRANK_ACCESS_LOG",
            )
        if not 0 < self.port < 65536:
            raise UsageError(f"port {self.port} is out of range", hint="use a port in 1..65535")
        if not 1 <= self.http_processes <= MAX_HTTP_PROCESSES:
            raise UsageError(
                f"http processes must be between 1 and {MAX_HTTP_PROCESSES} "
                f"(got {self.http_processes})",
                hint="use --http-processes N or CRANK_HTTP_PROCESSES=N, about one per CPU core "
                "(auto: one per CPU this process may use)",
                subject="CRANK_HTTP_PROCESSES",
            )
        if not self.health_interval_s > 0:
            raise UsageError(f"health_interval_s must be positive (got {self.health_interval_s})")
        for name, variable, what in _OVERLOAD_BOUNDS:
            if getattr(self, name) < 1:
                default = getattr(RuntimeConfig, name)
                raise UsageError(
                    f"{variable} must be at least 1 (got {getattr(self, name)}): it is the {what}",
                    hint=f"set {variable} to a whole number of 1 or more, or unset it ({default})",
                    subject=variable,
                )
        if not (math.isfinite(self.grace_s) and self.grace_s >= 0):
            raise UsageError(
                f"grace_s must be a number of seconds, 0 or more (got {self.grace_s})",
                hint="set CRANK_GRACE_S to the seconds in-flight tasks may still run after "
                "SIGTERM, or unset it (10)",
                subject="CRANK_GRACE_S",
            )
        if not (math.isfinite(self.replace_unlive_s) and self.replace_unlive_s >= 0):
            raise UsageError(
                f"replace_unlive_s must be a number of seconds, 0 or more "
                f"(got {self.replace_unlive_s})",
                hint="set --replace-unlive-after or CRANK_REPLACE_UNLIVE_S to the seconds a "
                "worker process may stay not live before it is replaced (0: never), or unset "
                f"it ({DEFAULT_REPLACE_UNLIVE_S:g})",
                subject="CRANK_REPLACE_UNLIVE_S",
            )
        budget = self.daily_budget_usd
        if budget is not None and not (math.isfinite(budget) and budget > 0):
            raise UsageError(
                f"daily budget must be positive (got {self.daily_budget_usd})",
                hint="set CRANK_DAILY_BUDGET_USD to a positive number of dollars, or unset it",
            )

    @property
    def dynamic_pool(self) -> bool:
        return self.mode == "prod" and self.max_workers > self.min_workers

    def scaling(self) -> ScalingConfig:
        return ScalingConfig(
            min_workers=self.min_workers,
            max_workers=self.max_workers,
            target_queue_per_worker=self.target_queue_per_worker,
        )

    def public(self) -> dict[str, Any]:
        """The configuration without secrets (logs, ``crank_runtime_started``)."""
        return {
            "broker_url": url_without_password(self.broker_url),
            "host": self.host,
            "port": self.port,
            "mode": self.mode,
            "min_workers": self.min_workers,
            "max_workers": self.max_workers,
            "auth": self.api_token is not None,
            "ui": self.ui,
            "access_log": self.access_log,
            "http_processes": self.http_processes,
            "daily_budget_usd": self.daily_budget_usd,
            "manifests": [str(p) for p in self.manifest_paths],
        }


def _env_number(
    env: Mapping[str, str], name: str, kind: type[float] | type[int], *, also: str | None = None
) -> Any:
    """``name``'s number, None when unset; ``also``: a word it may say instead."""
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return None
    words = f"a number or {also!r}" if also else "a number"
    try:
        number = kind(raw)
    except ValueError:
        raise UsageError(
            f"environment variable {name}={raw!r} is not {words}",
            hint=f"set {name} to {words}, or unset it",
            subject=name,
        ) from None
    if not math.isfinite(number):  # float("nan"), float("inf") parse
        raise UsageError(
            f"environment variable {name}={raw!r} is not a finite number",
            hint=f"set {name} to {words}, or unset it",
            subject=name,
        )
    return number


def _check_safety_poll(env: Mapping[str, str]) -> None:
    """``CRANK_RESULT_SAFETY_POLL_S``, read where results are waited for (every process
    ``crank run`` starts inherits it): a library falls back to the default for a wrong
    value, ``crank run`` says so."""
    poll = _env_number(env, SAFETY_POLL_ENV, float)
    if poll is not None and poll <= 0:
        raise UsageError(
            f"{SAFETY_POLL_ENV} must be more than 0 (got {poll:g}): it is how often, in "
            "seconds, a wait for a result that heard no notice reads the task anyway",
            hint=f"set {SAFETY_POLL_ENV} to a number of seconds above 0, or unset it "
            f"({SAFETY_POLL_S:g})",
            subject=SAFETY_POLL_ENV,
        )


def pool_bounds(manifests: Sequence[Manifest]) -> tuple[int, int, int]:
    """min, max and target queue per worker from the manifests' ``worker.scaling``."""
    if not manifests:
        return 1, 4, 10
    lo = max(m.worker.scaling.min_workers for m in manifests)
    hi = max(m.worker.scaling.max_workers for m in manifests)
    target = min(m.worker.scaling.target_queue_per_worker for m in manifests)
    return lo, max(lo, hi, 1), target


def build_config(
    manifests: Sequence[Manifest],
    *,
    broker_url: str | None = None,
    host: str | None = None,
    port: int | None = None,
    min_workers: int | None = None,
    max_workers: int | None = None,
    mode: Mode = "prod",
    env: Mapping[str, str] | None = None,
    **overrides: Any,
) -> RuntimeConfig:
    """Flags win over the environment, which wins over the manifests' scaling."""
    env = os.environ if env is None else env
    lo, hi, target = pool_bounds(manifests)
    if mode == "dev":
        # A fixed small pool: what the manifests ask for, capped.
        lo = hi = max(1, min(lo or 1, DEV_MAX_WORKERS))
    if min_workers is not None:
        lo = min_workers
        hi = max(hi, lo) if max_workers is None else hi
    if max_workers is not None:
        hi = max_workers
        lo = min(lo, hi) if min_workers is None else lo
    values: dict[str, Any] = {
        "broker_url": broker_url or env.get("CRANK_BROKER_URL") or DEFAULT_BROKER_URL,
        "host": host or DEFAULT_HOST,
        "port": port or DEFAULT_PORT,
        "mode": mode,
        "manifest_paths": tuple(m.path for m in manifests if m.path is not None),
        "min_workers": lo,
        "max_workers": hi,
        "target_queue_per_worker": target,
        "api_token": env.get("CRANK_API_TOKEN") or None,
    }
    for key, name, kind in (
        ("daily_budget_usd", "CRANK_DAILY_BUDGET_USD", float),
        ("max_pending_tasks", "CRANK_MAX_PENDING", int),
        ("max_inflight_requests", "CRANK_MAX_INFLIGHT", int),
        ("max_body_bytes", "CRANK_MAX_BODY_BYTES", int),
        ("grace_s", "CRANK_GRACE_S", float),
        ("replace_unlive_s", "CRANK_REPLACE_UNLIVE_S", float),
    ):
        number = _env_number(env, name, kind)
        if number is not None:
            values[key] = number
    processes = auto_http_processes(env.get("CRANK_HTTP_PROCESSES", ""))
    if processes is None:
        processes = _env_number(env, "CRANK_HTTP_PROCESSES", int, also=AUTO)
    if processes is not None:
        values["http_processes"] = processes
    if env.get("CRANK_UI", "").strip():
        values["ui"] = env["CRANK_UI"].strip().lower()
    if env.get("CRANK_ACCESS_LOG", "").strip():
        values["access_log"] = env["CRANK_ACCESS_LOG"].strip().lower()
    if env.get("CRANK_USAGE_DB"):
        values["usage_db"] = Path(env["CRANK_USAGE_DB"])
    _check_safety_poll(env)
    values.update(overrides)
    return RuntimeConfig(**values)


def with_overrides(config: RuntimeConfig, **changes: Any) -> RuntimeConfig:
    return replace(config, **changes)


__all__ = [
    "ACCESS_LOG_MODES",
    "AUTO",
    "CONSOLE_MODES",
    "DEFAULT_BROKER_URL",
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "DEFAULT_REPLACE_UNLIVE_S",
    "MAX_HTTP_PROCESSES",
    "AccessLogMode",
    "ConsoleMode",
    "Mode",
    "RuntimeConfig",
    "build_config",
    "pool_bounds",
    "with_overrides",
]
