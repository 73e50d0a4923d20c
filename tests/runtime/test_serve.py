"""Pieces of ``crank run`` that need no worker processes: the started hook, sockets, brokers."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from crank.errors import UsageError
from crank.hookspecs import hookimpl
from crank.plugins import get_plugin_manager
from crank.runtime.config import RuntimeConfig
from crank.runtime.serve import ServeError, _announce_started, bind_socket, open_runtime_broker


class Recorder:
    def __init__(self) -> None:
        self.seen: list[Any] = []

    @hookimpl
    def crank_runtime_started(self, config: Any) -> None:
        self.seen.append(config)


class Broken:
    @hookimpl
    def crank_runtime_started(self, config: Any) -> None:
        raise RuntimeError("plugin bug")


class Log:
    def __init__(self) -> None:
        self.errors: list[tuple[str, dict[str, Any]]] = []

    def error(self, event: str, **kw: Any) -> None:
        self.errors.append((event, kw))


def test_runtime_started_hook_gets_the_config_and_a_bad_plugin_is_isolated() -> None:
    manager = get_plugin_manager()
    recorder = Recorder()
    manager.register(recorder, name="test-recorder")
    try:
        config = RuntimeConfig(broker_url="sqlite:///q.db")
        log = Log()
        _announce_started(config, log)
        assert recorder.seen == [config]
        # registered later, so pluggy calls it first: its exception used to end the call
        manager.register(Broken(), name="test-broken")
        try:
            _announce_started(config, log)
        finally:
            manager.unregister("test-broken")
        assert recorder.seen == [config, config]
        assert log.errors == [
            (
                "plugin_runtime_started_failed",
                {"plugin": "test-broken", "error": "RuntimeError('plugin bug')"},
            )
        ]
    finally:
        manager.unregister("test-recorder")


def test_bind_socket_reports_a_taken_port() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        with pytest.raises(ServeError, match=f"cannot listen on 127.0.0.1:{port}"):
            bind_socket("127.0.0.1", port)
    sock = bind_socket("127.0.0.1", 0)
    # asyncio turns on TCP_NODELAY only for sockets created as TCP; without it every
    # keep-alive answer waited ~40 ms (Nagle + delayed ACK)
    assert sock.proto == socket.IPPROTO_TCP
    sock.close()


def test_memory_broker_is_refused_for_a_process_pool() -> None:
    with pytest.raises(UsageError, match="worker processes cannot share it"):
        open_runtime_broker("memory://")
