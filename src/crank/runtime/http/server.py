"""The uvicorn server of one process serving ``crank run``'s HTTP API.

Kept apart from :mod:`crank.runtime.serve` so that the main process of several HTTP
processes, which only supervises, never loads uvicorn, Starlette or the app.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from typing import TYPE_CHECKING, Any

import uvicorn

from crank.runtime.concurrency import CallAdmission, ConcurrencySlots
from crank.runtime.http.app import create_app
from crank.runtime.http.services import build_services
from crank.runtime.http.wire import GatheringHttpToolsProtocol
from crank.runtime.metrics import ServerMetrics

if TYPE_CHECKING:
    import socket
    from collections.abc import Callable, Iterator, Mapping
    from pathlib import Path

    from crank.routing import Router
    from crank.runtime.brokers.contract import Broker
    from crank.runtime.config import RuntimeConfig
    from crank.runtime.http.services import RuntimeServices
    from crank.runtime.status_tracker import StatusTracker


class GracefulServer(uvicorn.Server):
    """uvicorn re-raises the signal after shutting down; crank exits 0 instead.

    ``on_loop`` is called with the event loop as the server starts on it.
    """

    on_loop: Callable[[asyncio.AbstractEventLoop], None] | None = None
    #: the signals that stop it gracefully (a second one cuts the grace).
    exit_signals: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM)
    #: a signal that stops it gracefully however often it comes (its parent died: the
    #: kernel sends it once per thread of the parent).
    parent_gone_signal: signal.Signals | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        if self.on_loop is not None:
            self.on_loop(asyncio.get_running_loop())
        await super().startup(sockets=sockets)

    def _parent_gone(self, _signum: int, _frame: Any) -> None:
        self.should_exit = True

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        original = {sig: signal.signal(sig, self.handle_exit) for sig in self.exit_signals}
        if self.parent_gone_signal is not None:
            original[self.parent_gone_signal] = signal.signal(
                self.parent_gone_signal, self._parent_gone
            )
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)


def uvicorn_server(app: Any, config: RuntimeConfig) -> GracefulServer:
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


def http_server(
    config: RuntimeConfig,
    broker: Broker,
    router: Router,
    status: StatusTracker,
    *,
    metrics_dir: Path,
    slots_dir: str,
    limits: Mapping[str, int],
    shared: bool = False,
    session_key: bytes | None = None,
) -> tuple[GracefulServer, RuntimeServices]:
    """The server of one process serving HTTP, and what its handlers use; ``shared``: one
    of several such processes (their metrics counted in the multiprocess files, their
    console sessions signed with ``session_key``)."""
    metrics = ServerMetrics(
        status.snapshot,
        status.budget,
        multiprocess_dir=metrics_dir,
        shared=shared,
        capabilities=[r.capability_id for r in router.routes()],
    )
    services = build_services(
        config,
        broker,
        router,
        status=status,
        metrics=metrics,
        admission=CallAdmission(
            limits,
            ConcurrencySlots(slots_dir, limits),
            calls=ConcurrencySlots(slots_dir, limits, kind="call"),
        ),
    )
    services.session_key = session_key
    server = uvicorn_server(create_app(services), config)
    server.on_loop = broker.listen_in  # the loop reads result notices itself (SQLite, Redis)
    return server, services


__all__ = ["GracefulServer", "http_server", "uvicorn_server"]
