"""Shared runtime fixtures: a private redis-server and a broker of each backend.

``redis_server`` starts a real ``redis-server`` on a free loopback port with no
persistence and yields its URL; ``redis_server_aof`` does the same with an
append-only file (``appendfsync always``) in a temp dir and can be restarted
mid-test. ``broker`` is parametrized over memory, sqlite and redis. ``spans`` collects
the spans this process records (OpenTelemetry's in-memory exporter).
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import structlog

from crank.runtime.brokers import open_broker
from crank.testing import ensure_dependency

from ..ports import free_port

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from crank.runtime.brokers.contract import Broker

REDIS_HINT = "apt-get install redis-server (scripts/setup-system.sh does)"

FIXTURE_WORKERS = Path(__file__).resolve().parents[1] / "fixtures" / "queue_workers"
FIXTURE_MANIFEST = FIXTURE_WORKERS / "crank.yaml"


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"redis-server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(64).startswith(b"+PONG"):
                    return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"redis-server did not answer on port {port}")


class RedisServer:
    """A redis-server child process we own; ``restart()`` keeps port and data dir."""

    def __init__(self, workdir: Path, *, appendonly: bool) -> None:
        self.workdir = workdir
        self.appendonly = appendonly
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        argv = [
            "redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
            "--save", "", "--dir", str(self.workdir), "--daemonize", "no",
        ]  # fmt: skip
        if self.appendonly:
            argv += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            argv += ["--appendonly", "no"]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_for_port(self.port, self.proc)

    def stop(self, *, kill: bool = False) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            if kill:
                self.proc.kill()
            else:
                self.proc.terminate()
            self.proc.wait(timeout=10)
        self.proc = None

    def restart(self, *, kill: bool = True) -> None:
        self.stop(kill=kill)
        self.start()


def sse_frames(lines: Iterator[str]) -> Iterator[dict[str, str]]:
    """The frames of an SSE body (``{"id", "event", "data"}``), comment lines left out."""
    frame: dict[str, str] = {}
    for line in lines:
        if not line:
            if frame:
                yield frame
            frame = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(": ")
            frame[name] = value


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[str]:
    """URL of a fresh private redis-server (no persistence); killed after the test."""
    ensure_dependency("exe:redis-server", install_hint=REDIS_HINT)
    server = RedisServer(tmp_path, appendonly=False)
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def redis_server_aof(tmp_path: Path) -> Iterator[RedisServer]:
    """A private redis-server with AOF (appendfsync always); ``.restart()`` it mid-test."""
    ensure_dependency("exe:redis-server", install_hint=REDIS_HINT)
    server = RedisServer(tmp_path, appendonly=True)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["memory", "sqlite", "redis"])
def broker_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A broker URL of each backend, with fast retries for tests."""
    kind = request.param
    if kind == "memory":
        return "memory://?retry_base_s=0.01&retry_max_s=0.05"
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'queue.db'}?retry_base_s=0.01&retry_max_s=0.05"
    url: str = request.getfixturevalue("redis_server")
    return f"{url}?retry_base_s=0.01&retry_max_s=0.05"


@pytest.fixture
def broker(broker_url: str) -> Iterator[Broker]:
    """An open broker of each backend (memory, sqlite, redis); closed after the test."""
    opened = open_broker(broker_url)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def worker_env() -> dict[str, str]:
    """Environment for worker subprocesses: the fixture worker package importable."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(FIXTURE_WORKERS), env.get("PYTHONPATH", "")) if p
    )
    env["PYTHONUNBUFFERED"] = "1"
    return env


PYTHON = sys.executable


class WorkerPool:
    """``python -m crank.runtime.worker_process`` children we spawn, kill and reap."""

    def __init__(
        self, broker_url: str, env: dict[str, str], log_dir: Path, args: list[str]
    ) -> None:
        self.broker_url = broker_url
        self.env = env
        self.log_dir = log_dir
        self.args = args
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._count = 0

    def spawn(self) -> str:
        self._count += 1
        consumer = f"worker-{self._count}"
        log = (self.log_dir / f"{consumer}.log").open("wb")
        argv = [
            PYTHON, "-m", "crank.runtime.worker_process", "--broker", self.broker_url,
            "--manifest", str(FIXTURE_MANIFEST), "--consumer", consumer, *self.args,
        ]  # fmt: skip
        self.procs[consumer] = subprocess.Popen(
            argv, env=self.env, stdout=subprocess.DEVNULL, stderr=log
        )
        log.close()
        return consumer

    def alive(self) -> list[str]:
        return [c for c, p in self.procs.items() if p.poll() is None]

    def serving(self) -> list[str]:
        """Live workers that finished starting up (they logged that they serve)."""
        return [c for c in self.alive() if f"worker {c} serving" in self.log(c)]

    def kill(self, consumer: str) -> float:
        """SIGKILL; returns the time of death (``time.time()``)."""
        proc = self.procs[consumer]
        proc.kill()
        proc.wait(timeout=10)
        return time.time()

    def terminate(self, consumer: str, timeout_s: float = 120.0) -> int:
        proc = self.procs[consumer]
        proc.terminate()
        return proc.wait(timeout=timeout_s)

    def log(self, consumer: str) -> str:
        return (self.log_dir / f"{consumer}.log").read_text(errors="replace")

    def close(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)


@pytest.fixture
def worker_pool(tmp_path: Path, worker_env: dict[str, str]) -> Iterator[Callable[..., WorkerPool]]:
    """Factory ``worker_pool(broker_url, [extra args])``; every child is killed after the test."""
    pools: list[WorkerPool] = []
    log_dir = tmp_path / "worker-logs"
    log_dir.mkdir(exist_ok=True)

    def make(broker_url: str, args: list[str] | None = None) -> WorkerPool:
        pool = WorkerPool(broker_url, worker_env, log_dir, list(args or []))
        pools.append(pool)
        return pool

    try:
        yield make
    finally:
        for pool in pools:
            pool.close()


@pytest.fixture
def spans() -> Iterator[Any]:
    """An in-memory exporter on this process's tracer provider (installed once)."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    exporter = InMemorySpanExporter()
    processor = SimpleSpanProcessor(exporter)
    provider.add_span_processor(processor)
    yield exporter
    processor.shutdown()


@pytest.fixture
def logging_restored() -> Iterator[None]:
    """The process's logging as it was before the test: ``configure_logging`` changes the
    root logger and structlog's configuration, which later tests in the process (one
    reading structlog's default output from stdout) would otherwise inherit."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    config = structlog.get_config()
    saved = {**config, "processors": list(config["processors"])}
    yield
    for handler in [h for h in root.handlers if h.get_name() == "crank"]:
        root.removeHandler(handler)
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.configure(**saved)
