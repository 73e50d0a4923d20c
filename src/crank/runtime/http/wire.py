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


class GatheringHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, writing through :class:`_GatheredWrites`."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(_GatheredWrites(transport, self.loop))  # type: ignore[arg-type]


__all__ = ["GatheringHttpToolsProtocol"]
