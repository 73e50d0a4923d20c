"""``crank run``: the HTTP server and the supervised pool in one process, shut down gracefully.

Order on SIGTERM/SIGINT: the HTTP server stops accepting connections and lets
requests in progress finish (up to the grace period); then every worker
process gets SIGTERM, finishes its in-flight tasks and gives the unstarted
ones back to the queue; a worker still busy after the grace period is killed
and its tasks are recovered for the next start. The process exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import uvicorn

from crank.errors import BrokerError, CrankError, ExitCode, UsageError
from crank.plugins import get_plugin_manager
from crank.routing import Router
from crank.runtime.brokers import open_broker
from crank.runtime.concurrency import (
    SLOTS_DIR_ENV,
    CallAdmission,
    ConcurrencySlots,
    concurrency_limits,
)
from crank.runtime.config import _without_password
from crank.runtime.http.app import create_app
from crank.runtime.http.services import build_services
from crank.runtime.http.wire import GatheringHttpToolsProtocol
from crank.runtime.logs import configure_logging, get_logger
from crank.runtime.metrics import ServerMetrics
from crank.runtime.status_tracker import StatusTracker
from crank.runtime.supervisor import Supervisor
from crank.runtime.tracing import configure_tracing
from crank.runtime.usage import USAGE_DB_ENV, UsageStore

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

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
            f"broker {_without_password(url)} is unreachable ({why})",
            hint="start Redis (redis-server) or check --broker / CRANK_BROKER_URL",
            subject=url,
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
        raise ServeError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}",
            hint="pick another --port, or stop what is listening there",
            subject=f"{host}:{port}",
        ) from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


@contextlib.contextmanager
def metrics_dir(config: RuntimeConfig) -> Iterator[Path]:
    """The multiprocess metrics directory, emptied at start (stale files double-count)."""
    if config.metrics_dir is not None:
        path = Path(config.metrics_dir)
        if path.exists():
            shutil.rmtree(path)
        path.mkdir(parents=True)
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="crank-metrics-") as tmp:
        yield Path(tmp)


class GracefulServer(uvicorn.Server):
    """uvicorn re-raises the signal after shutting down; crank exits 0 instead.

    ``on_loop`` is called with the event loop as the server starts on it.
    """

    on_loop: Callable[[asyncio.AbstractEventLoop], None] | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        if self.on_loop is not None:
            self.on_loop(asyncio.get_running_loop())
        await super().startup(sockets=sockets)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        handled = (signal.SIGINT, signal.SIGTERM)
        original = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)


def _uvicorn_server(app: Any, config: RuntimeConfig) -> GracefulServer:
    uv_config = uvicorn.Config(
        app,
        http=GatheringHttpToolsProtocol,  # one write per JSON answer (see http/wire.py)
        log_config=None,
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=max(1, int(config.grace_s)),
        server_header=False,
    )
    return GracefulServer(uv_config)


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
        non_essential = [r.capability_id for r in router.routes() if not r.capability.essential]
        with (
            metrics_dir(config) as mdir,
            tempfile.TemporaryDirectory(prefix="crank-slots-") as slots_dir,
        ):
            slots = ConcurrencySlots(slots_dir, limits)
            env = dict(os.environ)
            env.update(config.worker_env)
            env["PROMETHEUS_MULTIPROC_DIR"] = str(mdir)
            env[SLOTS_DIR_ENV] = slots_dir
            env[USAGE_DB_ENV] = str(Path(config.usage_db).resolve())
            env["CRANK_LOG_MODE"] = config.mode
            status = StatusTracker(
                broker,
                min_workers=config.min_workers,
                usage=usage,
                daily_budget_usd=config.daily_budget_usd,
                budget_warn_ratio=config.budget_warn_ratio,
                non_essential=non_essential,
            )
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
                print(startup_summary(url, health, config.min_workers), file=sys.stderr, flush=True)

            supervisor.on_workers_known = announce
            status.pool = supervisor
            metrics = ServerMetrics(status.snapshot, status.budget, multiprocess_dir=mdir)
            services = build_services(
                config,
                broker,
                router,
                status=status,
                metrics=metrics,
                admission=CallAdmission(limits, slots),
            )
            server = _uvicorn_server(create_app(services), config)
            # result notices wake requests from the event loop itself (SQLite)
            server.on_loop = broker.listen_in
            supervisor.start()
            log.info("crank_started", url=url, **config.public())
            _announce_started(config, log)
            try:
                server.run(sockets=[sock])
            finally:
                log.info("crank_stopping", grace_s=config.grace_s)
                services.gateway.io.close()
                supervisor.stop(config.grace_s)
                supervisor = None
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


def startup_summary(url: str, health: dict[str, WorkerHealth], processes: int) -> str:
    """For a person: where crank listens, which worker serves what, and which cannot."""
    lines = [f"crank is listening on {url} with {processes} worker process(es)"]
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


def _announce_started(config: RuntimeConfig, log: Any) -> None:
    try:
        get_plugin_manager().hook.crank_runtime_started(config=config)
    except Exception as exc:
        log.error("plugin_runtime_started_failed", error=repr(exc))


__all__ = ["ServeError", "bind_socket", "open_runtime_broker", "serve", "startup_summary"]
