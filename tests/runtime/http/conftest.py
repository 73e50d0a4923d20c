"""Fixtures for the HTTP app: the fixture worker, an in-memory broker, worker threads.

``InlineWorker`` runs the fixture worker's handlers (publishing no live events);
``ScriptedWorker`` lets a test play the worker step by step. ``redis_services`` are the
services on a private redis-server that a test stops for a broker outage.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from crank.manifest import load_manifest
from crank.routing import Router
from crank.runtime.brokers import open_broker
from crank.runtime.brokers.contract import ClaimOptions
from crank.runtime.config import RuntimeConfig
from crank.runtime.http.app import create_app
from crank.runtime.http.services import build_services
from crank.runtime.http.wire import GatheringHttpToolsProtocol

from ...ports import free_port

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Callable, Iterator

    import httpx

    from crank.runtime.brokers.contract import Broker
    from crank.runtime.http.services import RuntimeServices

    from ..conftest import RedisServer

HTTP_WORKERS = Path(__file__).resolve().parents[2] / "fixtures" / "http_workers"
HTTP_MANIFEST = HTTP_WORKERS / "crank.yaml"
TODAY = dt.date(2026, 11, 22)


#: how long a scripted worker and the test wait for each other (generous: a busy
#: machine may stall either side for seconds).
WAIT_S = 60.0


#: every code a 503 may carry, as error_for answers them.
UNAVAILABLE_CODES = ("CAPABILITY_PAUSED", "WORKER_UNAVAILABLE", "BROKER_UNAVAILABLE")
#: the routes that call no capability: they read or change tasks in the broker only, so
#: their 503 is the broker's (none prepares a call, where a pause or a missing worker
#: is found).
BROKER_ROUTES = (
    ("/v1/tasks", "get"),
    ("/v1/tasks/{task_id}", "get"),
    ("/v1/tasks/{task_id}", "delete"),
    ("/v1/tasks/{task_id}/events", "get"),
    ("/v1/dead-letters", "get"),
    ("/v1/dead-letters/{task_id}", "delete"),
    ("/v1/dead-letters/{task_id}/redrive", "post"),
    ("/v1/capabilities/{capability}/dead-letters", "delete"),
    ("/v1/capabilities/{capability}/dead-letters/redrive", "post"),
)


def documented_503_codes(spec: dict[str, Any]) -> dict[tuple[str, str], tuple[str, ...]]:
    """(path, method) -> the codes its documented 503 names (the probes' 503 is no error)."""
    return {
        (path, method): tuple(
            c for c in UNAVAILABLE_CODES if c in op["responses"]["503"]["description"]
        )
        for path, ops in spec["paths"].items()
        for method, op in ops.items()
        if "503" in op["responses"] and path not in ("/health", "/ready")
    }


class ScriptedWorker:
    """Claims one task, then runs ``script(broker, claim, go)`` on a thread."""

    def __init__(self, broker: Broker, script: Callable[..., None]) -> None:
        self.broker = broker
        self.script = script
        self.go = threading.Event()
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            [claim] = self.broker.claim(ClaimOptions("scripted", block_s=WAIT_S))
            self.script(self.broker, claim, self.go)
        except BaseException as exc:  # reported by the test
            self.errors.append(exc)

    def __enter__(self) -> ScriptedWorker:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.go.set()
        self.thread.join(timeout=WAIT_S)
        assert not self.errors, self.errors


class InlineWorker:
    """Claims and runs tasks on a thread of the test process (the memory broker is in-process)."""

    def __init__(self, broker: Broker) -> None:
        from crank.worker.host import WorkerHost

        self.broker = broker
        self.host = WorkerHost(load_manifest(HTTP_MANIFEST))
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        # the worker loop's own decision of what a task's outcome is (failed, retry, dead)
        from crank.runtime.worker_process import CapabilityBinding, run_task

        bindings = {c.id: CapabilityBinding(self.host, c) for c in self.host.manifest.capabilities}
        while not self.stop_event.is_set():
            for claim in self.broker.claim(ClaimOptions("inline", limit=8, block_s=0.05)):
                outcome = run_task(bindings[claim.task.capability], claim)
                if outcome.error is None:
                    self.broker.ack(claim, outcome.result)
                else:
                    self.broker.fail(
                        claim,
                        outcome.error,
                        retryable=outcome.retryable,
                        client_fault=outcome.client_fault,
                    )
        self.host.stop()

    def __enter__(self) -> InlineWorker:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_event.set()
        self.thread.join(timeout=60)


@pytest.fixture
def http_workers_path(monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.syspath_prepend(str(HTTP_WORKERS))
    return HTTP_WORKERS


@pytest.fixture
def make_services(
    http_workers_path: Path, tmp_path: Path
) -> Iterator[Callable[..., RuntimeServices]]:
    opened: list[Broker] = []

    def make(today: dt.date = TODAY, **config: Any) -> RuntimeServices:
        broker = open_broker("memory://")
        opened.append(broker)
        router = Router.from_manifests([load_manifest(HTTP_MANIFEST)], today=lambda: today)
        config.setdefault("min_workers", 0)
        cfg = RuntimeConfig(broker_url="memory://", manifest_paths=(HTTP_MANIFEST,), **config)
        return build_services(cfg, broker, router)

    yield make
    for broker in opened:
        broker.close()


@pytest.fixture
def services(make_services: Callable[..., RuntimeServices]) -> RuntimeServices:
    return make_services()


@contextlib.contextmanager
def services_on_redis(redis: RedisServer) -> Iterator[RuntimeServices]:
    """Services of the fixture worker on ``redis`` (the fixture workers' folder must be
    on ``sys.path``): ``redis.stop()`` is a broker outage (Redis gone, its port closed)."""
    broker = open_broker(f"{redis.url}?retry_base_s=0.01&retry_max_s=0.05")
    try:
        router = Router.from_manifests([load_manifest(HTTP_MANIFEST)], today=lambda: TODAY)
        config = RuntimeConfig(broker_url=redis.url, manifest_paths=(HTTP_MANIFEST,), min_workers=0)
        yield build_services(config, broker, router)
    finally:
        broker.close()


@pytest.fixture
def redis_services(
    http_workers_path: Path, redis_server_aof: RedisServer
) -> Iterator[RuntimeServices]:
    """Services on the test's private redis-server (``redis_server_aof``: its ``stop()``
    is a broker outage)."""
    with services_on_redis(redis_server_aof) as services:
        yield services


def wait_until(check: Callable[[], Any], what: str, timeout_s: float = WAIT_S) -> Any:
    """``check()``'s first true value, asked until ``timeout_s`` passed (then fails)."""
    import time

    deadline = time.monotonic() + timeout_s
    while not (found := check()):
        assert time.monotonic() < deadline, f"no {what} within {timeout_s} s"
        time.sleep(0.02)
    return found


def wait_for_outage(http: httpx.Client) -> None:
    """Until the server sees the broker gone (its cached statistics may be a moment old)."""
    wait_until(
        lambda: "crank_broker_up 0.0" in http.get("/metrics").text, "broker outage on /metrics"
    )


class ServerThread:
    """A real uvicorn server on a free loopback port, on a thread of the test process."""

    def __init__(self, app: Any, http: type[asyncio.Protocol] | None = None) -> None:
        import uvicorn

        self.port = free_port()
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_config=None,
            lifespan="off",
            http=http or GatheringHttpToolsProtocol,  # the protocol `crank run` serves with
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ServerThread:
        import time

        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=60)


@pytest.fixture
def serve() -> Iterator[Callable[[RuntimeServices], httpx.Client]]:
    """``serve(services)`` -> an httpx client of a live server running ``create_app(services)``."""
    import httpx

    stack: list[tuple[ServerThread, httpx.Client]] = []

    def start(services: RuntimeServices) -> httpx.Client:
        server = ServerThread(create_app(services)).__enter__()
        http = httpx.Client(base_url=server.url, timeout=30)
        stack.append((server, http))
        return http

    yield start
    for server, http in reversed(stack):
        http.close()
        server.__exit__(None, None, None)


@pytest.fixture
def client(
    services: RuntimeServices, serve: Callable[[RuntimeServices], httpx.Client]
) -> httpx.Client:
    return serve(services)


@pytest.fixture
def worker(services: RuntimeServices) -> Iterator[InlineWorker]:
    with InlineWorker(services.broker) as inline:
        yield inline


@pytest.fixture
def inline_worker(http_workers_path: Path) -> type[InlineWorker]:
    """The :class:`InlineWorker` class, for tests that build their own services."""
    return InlineWorker
