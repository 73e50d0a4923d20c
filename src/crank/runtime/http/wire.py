"""One socket write per response: uvicorn's HTTP protocol with its writes gathered.

uvicorn writes a response's status line and headers, then its body, each with its
own ``transport.write``: two ``send`` system calls (and two TCP segments) for every
small JSON answer. :class:`GatheringHttpToolsProtocol` gives uvicorn's protocol a
transport whose writes made in one turn of the event loop go out together at the end
of that turn: a JSON answer, whose headers and body are sent in the same turn, leaves
in one call; a streamed answer (SSE) still leaves event by event, each at the end of
the turn that wrote it.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

if TYPE_CHECKING:
    import asyncio


class _GatheredWrites:
    """A transport whose writes of one event-loop turn go out in one ``write``."""

    __slots__ = ("_loop", "_pending", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(bytes(data))

    def writelines(self, lines: Any) -> None:
        for data in lines:
            self.write(data)

    def flush(self) -> None:
        if not self._pending:
            return
        data = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
        self._pending = []
        if not self._transport.is_closing():
            self._transport.write(data)

    def close(self) -> None:
        self.flush()  # what was written before close goes out, as with a plain transport
        self._transport.close()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def abort(self) -> None:
        self._pending = []
        self._transport.abort()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(map(len, self._pending))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


#: the answer to bytes that are not an HTTP/1.1 request, in the API's error shape (uvicorn's
#: own is plain text); the connection is closed after it, as uvicorn does.
_MALFORMED = json.dumps(
    {
        "error": {
            "code": "MALFORMED_REQUEST",
            "message": "the request is not valid HTTP/1.1 (its request line, a header, "
            "or its body's framing)",
            "hint": "check the headers the client sends: Content-Length a number, no "
            "control characters in values, one Transfer-Encoding",
        }
    },
    separators=(",", ":"),
).encode()


class GatheringHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, writing through :class:`_GatheredWrites`, its 400
    for a malformed request in the API's JSON error shape."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(_GatheredWrites(transport, self.loop))  # type: ignore[arg-type]

    def send_400_response(self, msg: str) -> None:
        head = [b"HTTP/1.1 400 Bad Request\r\n"]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        head += [
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(_MALFORMED),
            b"connection: close\r\n\r\n",
        ]
        self.transport.write(b"".join(head) + _MALFORMED)
        self.transport.close()


__all__ = ["GatheringHttpToolsProtocol"]
