"""One write per JSON answer, and streamed answers still leave event by event
(crank.runtime.http.wire), over a real uvicorn server and a real socket."""

from __future__ import annotations

import asyncio
import socket
import threading
from typing import TYPE_CHECKING, Any

import httpx
from starlette.applications import Starlette
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route
from tests.runtime.http.conftest import WAIT_S, ServerThread

from crank.runtime.http.wire import GatheringHttpToolsProtocol

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from starlette.requests import Request


class _Counted:
    """The real transport, its writes counted."""

    def __init__(self, transport: asyncio.Transport, writes: list[bytes]) -> None:
        self._transport = transport
        self._writes = writes

    def write(self, data: bytes) -> None:
        self._writes.append(bytes(data))
        self._transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def counting_protocol(writes: list[bytes]) -> type[asyncio.Protocol]:
    class Counting(GatheringHttpToolsProtocol):
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(_Counted(transport, writes))  # type: ignore[arg-type]

    return Counting


def app(second_event: threading.Event) -> Starlette:
    async def echo(request: Request) -> JSONResponse:
        return JSONResponse(await request.json(), headers={"X-Crank-Task-Id": "t1"})

    async def events(request: Request) -> StreamingResponse:
        async def body() -> AsyncIterator[bytes]:
            yield b"data: one\n\n"
            # the next event only once the client has read the first: had the first been
            # held back until the stream ends, the client would wait here forever
            await asyncio.get_running_loop().run_in_executor(None, second_event.wait, WAIT_S)
            yield b"data: two\n\n"

        return StreamingResponse(body(), media_type="text/event-stream")

    return Starlette(routes=[Route("/echo", echo, methods=["POST"]), Route("/events", events)])


def test_a_json_answer_leaves_in_one_write_with_its_headers() -> None:
    writes: list[bytes] = []
    server = ServerThread(app(threading.Event()), http=counting_protocol(writes))
    with server, httpx.Client(base_url=server.url, timeout=WAIT_S) as client:
        for text in ("first", "second"):  # one keep-alive connection, two answers
            answer = client.post("/echo", json={"text": text})
            assert answer.status_code == 200
            assert answer.json() == {"text": text}
            assert answer.headers["x-crank-task-id"] == "t1"
    assert len(writes) == 2, writes
    for data, text in zip(writes, ("first", "second"), strict=True):
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK")
        assert body == b'{"text":"%s"}' % text.encode()


def test_a_streamed_answer_leaves_event_by_event() -> None:
    second = threading.Event()
    server = ServerThread(app(second))
    client = httpx.Client(base_url=server.url, timeout=WAIT_S)
    with server, client, client.stream("GET", "/events") as answer:
        lines = answer.iter_lines()
        assert next(lines) == "data: one"
        second.set()
        assert [line for line in lines if line] == ["data: two"]


def test_an_answer_written_just_before_the_connection_closes_is_not_lost() -> None:
    # HTTP/1.0 without keep-alive: uvicorn closes the transport right after the body
    # is written, in the same turn: the gathered bytes must go out before the close
    server = ServerThread(app(threading.Event()))
    with server, socket.create_connection(("127.0.0.1", server.port), timeout=WAIT_S) as sock:
        body = b'{"text":"bye"}'
        sock.sendall(
            b"POST /echo HTTP/1.0\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    assert received.startswith(b"HTTP/1.1 200 OK")
    assert received.endswith(b'{"text":"bye"}')
