"""A real ``crank run`` for the client to call, a proxy that drops a stream, a scripted server.

* ``server``: ``crank run`` (SQLite) serving the HTTP fixture worker and the client
  fixture worker, started once per module;
* ``DroppingProxy``: a TCP relay in front of a server that cuts the first connection
  whose answer carried a given SSE event, and records every request head;
* ``ScriptedServer``: a stdlib HTTP server answering a list of canned responses in
  turn, recording each request (for what only a misbehaving server does);
* ``EventStreamServer``: answers every request with an event stream whose body depends
  on its ``Last-Event-ID``, then hangs up or holds the connection saying nothing (a
  half-open connection, a proxy that passes nothing).
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from ..runtime.conftest import (  # noqa: F401 - fixtures
    free_port,
    redis_server,
    redis_server_aof,
    worker_env,
    worker_pool,
)
from ..runtime.serve.conftest import CrankRun, crank_run  # noqa: F401 - fixtures

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

_REQUEST_HEAD = re.compile(rb"(?:GET|POST|PUT|DELETE) [^\r\n]* HTTP/1\.1\r\n.*?\r\n\r\n", re.S)
CLIENT_WORKER = Path(__file__).resolve().parents[1] / "fixtures" / "client_worker"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CrankRun]:
    """``crank run`` on SQLite with the HTTP and client fixture workers (1-2 processes)."""
    run = CrankRun(
        tmp_path_factory.mktemp("crank-run"),
        "--worker", str(CLIENT_WORKER), "--min-workers", "1", "--max-workers", "2",
    )  # fmt: skip
    try:
        yield run.start()
    finally:
        run.close()


class DroppingProxy:
    """Relays TCP to ``upstream_port``; closes the first connection whose answer held
    ``drop_after`` (bytes), right after relaying that chunk."""

    def __init__(self, upstream_port: int, drop_after: bytes) -> None:
        self.upstream_port = upstream_port
        self.drop_after = drop_after
        self.dropped = threading.Event()
        #: the head of each request relayed (request line and headers, lower-cased).
        self.requests: list[str] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._closing = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._closing:
            try:
                downstream, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            threading.Thread(target=self._up, args=(downstream, upstream), daemon=True).start()
            threading.Thread(target=self._down, args=(upstream, downstream), daemon=True).start()

    def _up(self, downstream: socket.socket, upstream: socket.socket) -> None:
        pending = b""
        with contextlib.suppress(OSError):
            while chunk := downstream.recv(65536):
                pending += chunk
                end = 0
                for head in _REQUEST_HEAD.finditer(pending):
                    self.requests.append(head.group(0).decode().lower())
                    end = head.end()
                pending = pending[end:]
                upstream.sendall(chunk)
        _close(upstream)

    def _down(self, upstream: socket.socket, downstream: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while chunk := upstream.recv(65536):
                downstream.sendall(chunk)
                if not self.dropped.is_set() and self.drop_after in chunk:
                    self.dropped.set()
                    break
        _close(downstream)
        _close(upstream)

    def close(self) -> None:
        self._closing = True
        _close(self._listener)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()


@pytest.fixture
def dropping_proxy() -> Iterator[type[DroppingProxy]]:
    made: list[DroppingProxy] = []

    class Made(DroppingProxy):
        def __init__(self, upstream_port: int, drop_after: bytes) -> None:
            super().__init__(upstream_port, drop_after)
            made.append(self)

    yield Made
    for proxy in made:
        proxy.close()


#: a scripted "status" that hangs up without answering.
DROP = 0


class ScriptedServer:
    """Answers ``(status, headers, body)`` in turn (the last one repeats); ``DROP`` hangs up."""

    def __init__(self, answers: list[tuple[int, dict[str, str], Any]]) -> None:
        self.answers = answers
        #: (method, path, headers) of every request, in order.
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        scripted = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                if length:
                    self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                scripted.requests.append((self.command, self.path, headers))
                index = min(len(scripted.requests), len(scripted.answers)) - 1
                status, extra, body = scripted.answers[index]
                if status == DROP:
                    self.close_connection = True  # hang up without an answer
                    return
                raw = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                for name, value in {"Content-Type": "application/json", **extra}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            do_GET = do_POST = do_DELETE = _answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def scripted() -> Iterator[type[ScriptedServer]]:
    made: list[ScriptedServer] = []

    class Made(ScriptedServer):
        def __init__(self, answers: list[tuple[int, dict[str, str], Any]]) -> None:
            super().__init__(answers)
            made.append(self)

    yield Made
    for server in made:
        server.close()


class EventStreamServer:
    """Answers each request with ``200 text/event-stream``: the body ``answer`` gives for
    the request's ``Last-Event-ID``, then it hangs up, or holds the connection open and
    sends nothing more when ``answer`` says so."""

    def __init__(self, answer: Callable[[int], tuple[bytes, bool]]) -> None:
        self.answer = answer
        #: the ``Last-Event-ID`` of each request, in order.
        self.last_event_ids: list[int] = []
        self._closing = threading.Event()
        self._held: list[socket.socket] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        head = b""
        with contextlib.suppress(OSError):
            while b"\r\n\r\n" not in head:
                chunk = conn.recv(65536)
                if not chunk:
                    _close(conn)
                    return
                head += chunk
            headers = dict(
                line.split(":", 1) for line in head.decode().split("\r\n")[1:] if ":" in line
            )
            after = int({k.lower(): v for k, v in headers.items()}.get("last-event-id", "0"))
            self.last_event_ids.append(after)
            body, hold = self.answer(after)
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                b"Connection: close\r\n\r\n" + body
            )
            if hold:
                self._held.append(conn)
                return
        _close(conn)

    def close(self) -> None:
        self._closing.set()
        _close(self._listener)
        for conn in self._held:
            _close(conn)


@pytest.fixture
def event_stream_server() -> Iterator[type[EventStreamServer]]:
    made: list[EventStreamServer] = []

    class Made(EventStreamServer):
        def __init__(self, answer: Callable[[int], tuple[bytes, bool]]) -> None:
            super().__init__(answer)
            made.append(self)

    yield Made
    for server in made:
        server.close()
