"""``crank run``: the HTTP server and the supervised pool in one process, shut down gracefully.

Order on SIGTERM/SIGINT: the HTTP server stops accepting connections and lets
requests in progress finish (up to the grace period); then every worker
process gets SIGTERM, finishes its in-flight tasks and gives the unstarted
ones back to the queue; a worker still busy after the grace period is killed
and its tasks are recovered for the next start. The process exits 0. A second
signal cuts the grace everywhere (:class:`StopSignals`): the workers stop at once and
give their tasks back, and crank run still waits for them to exit.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import socket
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crank.errors import BrokerError, CrankError, ExitCode, UsageError
from crank.plugins import get_plugin_manager
from crank.routing import Router
from crank.runtime.brokers import open_broker
from crank.runtime.brokers.common import url_without_password
from crank.runtime.concurrency import (
    SLOTS_DIR_ENV,
    concurrency_limits,
)
from crank.runtime.http_processes import HttpProcesses, HttpProcessPlan, per_process_config
from crank.runtime.logs import configure_logging, get_logger
from crank.runtime.metrics import BUDGET_ALERTS
from crank.runtime.pool_snapshot import PoolPublisher
from crank.runtime.run_dir import RUN_DIR_ENV, run_directory
from crank.runtime.status_tracker import StatusTracker, budget_announcer
from crank.runtime.supervisor import Supervisor
from crank.runtime.task_metrics import MultiprocessFiles
from crank.runtime.tracing import configure_tracing
from crank.runtime.usage import USAGE_DB_ENV, UsageStore

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from crank.manifest import Manifest
    from crank.runtime.brokers.contract import Broker
    from crank.runtime.config import RuntimeConfig
    from crank.runtime.worker_reports import WorkerHealth


class ServeError(CrankError):
    """The server cannot start (port taken, broker unreachable)."""

    exit_code = ExitCode.UNAVAILABLE


def open_runtime_broker(url: str) -> Broker:
    """Open and ping the broker; a clear error instead of a traceback when it is not there."""
    if url.startswith("memory://"):
        raise UsageError(
            "the memory:// broker lives inside one process; worker processes cannot share it",
            hint="use the default sqlite:///crank-queue.db or redis://HOST:PORT/DB",
            subject=url,
        )
    broker = open_broker(url)
    try:
        ok = bool(broker.ping())
    except Exception as exc:
        ok, why = False, f"{type(exc).__name__}: {exc}"
    else:
        why = "it did not answer the ping"
    if not ok:
        broker.close()
        raise BrokerError(
            f"broker {url_without_password(url)} is unreachable ({why})",
            hint="start Redis (redis-server) or check --broker / CRANK_BROKER_URL",
            subject=url_without_password(url),
        )
    return broker


def bind_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY only on sockets that say they
    # are TCP; without it every keep-alive response waits ~40 ms on Nagle + delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if isinstance(exc, socket.gaierror) or exc.errno == errno.EADDRNOTAVAIL:
            # no such name, or an address no interface of this machine has
            raise UsageError(
                f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                hint="--host must be an address of this machine, e.g. 127.0.0.1 or 0.0.0.0",
                subject=host,
            ) from None
        raise ServeError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}",
            hint="pick another --port, or stop what is listening there",
            subject=f"{host}:{port}",
        ) from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def metrics_dir(config: RuntimeConfig, run_dir: Path) -> Path:
    """The multiprocess metrics directory: the configured one, emptied at start (stale
    files double-count), or one in the run's private directory."""
    path = Path(config.metrics_dir) if config.metrics_dir is not None else run_dir / "metrics"
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


class StopSignals:
    """SIGTERM and SIGINT of ``crank run``, from its start until every process it started
    has stopped: the first stops it gracefully (``on_first``); each later one cuts the
    grace (``on_again``): the HTTP processes and the worker processes stop at once, and
    the workers give their tasks back.

    Installed over the whole stop, not only while HTTP is served: a signal that found
    Python's default handler there raised ``KeyboardInterrupt`` in the middle of
    stopping the workers, which then kept their grace while the metrics directory they
    write to was removed.
    """

    def __init__(self) -> None:
        self.received = 0
        #: set by the first signal.
        self.stopping = threading.Event()
        self.on_first: list[Callable[[int], None]] = []
        self.on_again: list[Callable[[int], None]] = []
        self._original: dict[int, Any] = {}

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._original[sig] = signal.signal(sig, self.handle)

    def restore(self) -> None:
        for sig, handler in self._original.items():
            signal.signal(sig, handler)
        self._original = {}

    def handle(self, signum: int, _frame: Any) -> None:
        self.received += 1
        for call in self.on_first if self.received == 1 else self.on_again:
            call(signum)
        self.stopping.set()


def runtime_status(
    config: RuntimeConfig, broker: Broker, router: Router, usage: UsageStore | None
) -> StatusTracker:
    """The status tracker of one process serving HTTP (its pool is set by the caller)."""
    return StatusTracker(
        broker,
        min_workers=config.min_workers,
        usage=usage,
        daily_budget_usd=config.daily_budget_usd,
        budget_warn_ratio=config.budget_warn_ratio,
        non_essential=[r.capability_id for r in router.routes() if not r.capability.essential],
    )


def serve(config: RuntimeConfig, manifests: Sequence[Manifest]) -> int:
    """Run until SIGTERM/SIGINT; returns the exit code (0 after a graceful stop)."""
    configure_logging(config.mode)
    configure_tracing()  # CRANK_TRACES_FILE / OTEL_TRACES_EXPORTER; its worker processes too
    log = get_logger("crank.runtime")
    router = Router.from_manifests(manifests)
    limits = concurrency_limits(manifests)  # a bad CRANK_MAX_CONCURRENCY stops here
    sock = bind_socket(config.host, config.port)
    broker: Broker | None = None
    usage: UsageStore | None = None
    supervisor: Supervisor | None = None
    try:
        broker = open_runtime_broker(config.broker_url)
        usage = UsageStore(config.usage_db)
        with run_directory() as run_dir:
            mdir = metrics_dir(config, run_dir)
            (run_dir / "slots").mkdir()
            slots_dir = str(run_dir / "slots")
            env = dict(os.environ)
            env.update(config.worker_env)
            env["PROMETHEUS_MULTIPROC_DIR"] = str(mdir)
            env[SLOTS_DIR_ENV] = slots_dir
            env[RUN_DIR_ENV] = str(run_dir)
            env[USAGE_DB_ENV] = str(Path(config.usage_db).resolve())
            env["CRANK_LOG_MODE"] = config.mode
            status = runtime_status(config, broker, router, usage)
            supervisor = Supervisor(
                config,
                broker,
                status=status,
                capabilities=[r.capability_id for r in router.routes()],
                workers={m.name: m.capability_ids for m in manifests},
                env=env,
            )
            url = f"http://{config.host}:{config.port}"

            def announce(health: dict[str, WorkerHealth]) -> None:
                summary = startup_summary(
                    url, health, config.min_workers, http_processes=config.http_processes
                )
                print(summary, file=sys.stderr, flush=True)

            supervisor.on_workers_known = announce
            status.pool = supervisor
            stop_signals = StopSignals()
            pool = supervisor
            stop_signals.on_again.append(lambda _signum: pool.cut_grace())
            stop_signals.install()
            try:
                if config.http_processes == 1:
                    # only here: the main process of several HTTP processes supervises
                    # and never loads the HTTP stack (uvicorn, Starlette, the app)
                    from crank.runtime.http.server import http_server

                    server, services = http_server(
                        config, broker, router, status, metrics_dir=mdir, slots_dir=slots_dir,
                        limits=limits,
                    )  # fmt: skip
                    # crank run's own handlers stay in place (see StopSignals); the server
                    # hears of each signal from them, as from its own
                    server.exit_signals = ()
                    stop_signals.on_first.append(lambda signum: server.handle_exit(signum, None))
                    stop_signals.on_again.append(lambda signum: _force_exit(server, signum))
                    supervisor.start()
                    log.info("crank_started", url=url, **config.public())
                    _announce_started(config, log)
                    try:
                        server.run(sockets=[sock])
                    finally:
                        log.info("crank_stopping", grace_s=config.grace_s)
                        services.gateway.io.close()
                else:
                    plan = HttpProcessPlan(
                        config=per_process_config(config),
                        manifests=tuple(manifests),
                        fd=sock.fileno(),
                        pool_file=Path(slots_dir) / "pool.json",
                        metrics_dir=mdir,
                        slots_dir=slots_dir,
                        limits=limits,
                        # with a token, every process derives the key from it (as replicas
                        # do); without one, one random key for all of them
                        session_key=None if config.api_token else os.urandom(32),
                    )
                    _serve_from_processes(config, plan, supervisor, stop_signals, env, log, url)
            finally:
                supervisor.stop(config.grace_s)
                supervisor = None
                stop_signals.restore()
    finally:
        if supervisor is not None:
            supervisor.stop(config.grace_s)
        sock.close()
        if usage is not None:
            usage.close()
        if broker is not None:
            broker.close()
    log.info("crank_stopped")
    return 0


def _force_exit(server: Any, signum: int) -> None:
    """A later stop signal: the HTTP server stops waiting for requests in progress."""
    server.handle_exit(signum, None)
    server.force_exit = True


def _serve_from_processes(
    config: RuntimeConfig,
    plan: HttpProcessPlan,
    supervisor: Supervisor,
    stop_signals: StopSignals,
    env: dict[str, str],
    log: Any,
    url: str,
) -> None:
    """The main process of ``--http-processes N``: the supervisor, the pool file, and N
    processes serving the port (:mod:`crank.runtime.http_processes`), until a signal."""
    front = HttpProcesses(plan, config.http_processes, env=env, log=log)
    # the budget is watched here, on the supervisor's tick, and announced once (the HTTP
    # processes do not announce it); counted in the metrics files like a worker's counts
    alerts = MultiprocessFiles(str(plan.metrics_dir))
    if supervisor.status is not None:
        supervisor.status.on_budget_level = budget_announcer(
            lambda level: alerts.inc(BUDGET_ALERTS, (level,))
        )
    publisher = PoolPublisher(
        supervisor,
        plan.pool_file,
        interval_s=min(0.5, config.monitor_interval_s),
        http=front.report,
        log=log,
    )
    # a second Ctrl-C: the HTTP processes cut their grace (the workers: see serve)
    stop_signals.on_again.append(lambda _signum: front.signal_all(signal.SIGTERM))
    try:
        supervisor.start()
        publisher.start()
        front.start()
        log.info("crank_started", url=url, **config.public())
        _announce_started(config, log)
        while not stop_signals.stopping.wait(0.25):
            front.check()
    finally:
        log.info("crank_stopping", grace_s=config.grace_s)
        front.stop(config.grace_s)
        publisher.stop()
        alerts.close()


def startup_summary(
    url: str, health: dict[str, WorkerHealth], processes: int, *, http_processes: int = 1
) -> str:
    """For a person: where crank listens, which worker serves what, and which cannot."""
    serving = f" ({http_processes} HTTP processes)" if http_processes > 1 else ""
    lines = [f"crank is listening on {url}{serving} with {processes} worker process(es)"]
    if not health:
        lines.append("  no worker processes here: tasks wait for workers that run elsewhere")
    for name, worker in sorted(health.items()):
        caps = ", ".join(worker.capabilities) or "no capabilities"
        if worker.state == "ready":
            lines.append(f"  {name}: serves {caps} at {url}/v1/capabilities/<id>")
        elif worker.state == "failed":
            lines.append(f"  {name}: FAILED to load: {worker.reason}")
            lines.append(f"    its capabilities answer 503 until it is fixed: {caps}")
        else:
            lines.append(f"  {name}: NOT READY: {worker.reason}")
            lines.append(f"    its capabilities answer 503 until it is ready: {caps}")
    return "\n".join(lines)


def _warn_if_open(config: RuntimeConfig, log: Any, env: Mapping[str, str]) -> None:
    """Say so when the API answers anyone: a CRANK_API_TOKEN that is set but empty (an
    unset shell variable passed on) is taken as no token at all, and a server listening
    beyond this machine without a token queues tasks for whoever reaches its port."""
    if config.api_token is not None:
        return
    if "CRANK_API_TOKEN" in env:
        log.warning(
            "api_token_empty",
            message="CRANK_API_TOKEN is set but empty: the API answers without a token",
            hint="set CRANK_API_TOKEN to the token clients must send, or unset it",
        )
    if config.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning(
            "api_open",
            message=f"listening on {config.host} with no CRANK_API_TOKEN set, so whoever reaches "
            "the port can call capabilities and queue tasks",
            hint="set CRANK_API_TOKEN, or listen on 127.0.0.1 behind a proxy that checks callers",
        )


def _announce_started(config: RuntimeConfig, log: Any) -> None:
    _warn_if_open(config, log, os.environ)
    # each plugin on its own: one that raises must not keep the others from hearing it
    for plugin, started in get_plugin_manager().callers("crank_runtime_started"):
        try:
            started(config=config)
        except Exception as exc:
            log.error("plugin_runtime_started_failed", plugin=plugin, error=repr(exc))


__all__ = [
    "ServeError",
    "bind_socket",
    "open_runtime_broker",
    "runtime_status",
    "serve",
    "startup_summary",
]
