"""Connections to Redis for :mod:`.redis`: a socket and hiredis's C reply parser.

The broker sends raw commands (mostly ``EVALSHA`` of its scripts, packed by hiredis)
and reads raw replies; it needs no client library's command methods. redis-py would
cost every worker process about 15 MB: its package imports its asyncio client, ssl,
cluster and sentinel support and, when installed, OpenTelemetry's metrics SDK, before
the first command. What it did for the broker is here: the URL, the connection
(connect and ``AUTH`` / ``SELECT``, TLS for ``rediss://``, timeouts), a health check
of a connection idle for a while, a pool, and a subscription.

Replies come as Python values, strings decoded as UTF-8; an error Redis answered is a
:class:`ReplyError` *value* (the connection stays in step and usable); a connection
that broke, timed out or went out of step raises :class:`ConnectionLost`, and is
closed: its next use connects again.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import struct
import sys
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import hiredis

if TYPE_CHECKING:
    from collections.abc import Sequence

#: a connection unused this long is pinged before it is written to (a peer that went
#: away without closing it, a NAT that forgot it): as redis-py's health checks.
HEALTH_CHECK_AFTER_S = 30.0
_READ_SIZE = 65_536
#: whether a plain connection's timeouts are the kernel's (``SO_RCVTIMEO`` /
#: ``SO_SNDTIMEO`` on a blocking socket): a socket with a Python timeout polls before
#: every ``send`` and ``recv``, two system calls more per round trip (a worker makes
#: three round trips per task at one connection). Linux's ``timeval`` is two longs.
_KERNEL_TIMEOUTS = sys.platform.startswith("linux")


def _timeval(seconds: float) -> bytes:
    whole = int(seconds)
    return struct.pack("@ll", whole, int((seconds - whole) * 1_000_000))


class RedisError(Exception):
    """Anything that went wrong talking to Redis."""


class ConnectionLost(RedisError):
    """The connection could not be made, broke, timed out or went out of step."""


class LoginRefused(ConnectionLost):
    """Redis answered the login (``AUTH``, ``SELECT``) with an error: the URL's user,
    password or database number, not the network."""


class ReplyError(RedisError):
    """An error Redis answered with (``-ERR ...``); read as a value, not raised."""

    @property
    def no_script(self) -> bool:
        """Redis does not know the script (it restarted, or its scripts were flushed)."""
        return str(self).startswith("NOSCRIPT")


class _OutOfStep(ConnectionLost):
    """hiredis could not parse what came (the connection is out of step)."""


@dataclass(frozen=True)
class Address:
    """Where a Redis is and how to log in: ``redis://[[user]:password@]host[:port][/db]``,
    ``rediss://`` (TLS, the certificate verified against the system's certificate
    authorities, or ``SSL_CERT_FILE``'s) or ``unix://[[user]:password@]/path``."""

    host: str = "localhost"
    port: int = 6379
    path: str | None = None
    db: int = 0
    username: str | None = None
    password: str | None = None
    tls: bool = False

    @classmethod
    def parse(cls, url: str) -> Address:
        """The address of ``url``; ``ValueError`` says what is wrong with it."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("redis", "rediss", "unix"):
            raise ValueError(f"the scheme {scheme!r} is not redis://, rediss:// or unix://")
        username = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password is not None else None
        if username and password is None:
            raise ValueError(
                "a user name needs its password (redis://user:password@host; "
                "redis://:password@host for the default user)"
            )
        if scheme == "unix":
            if not parts.path:
                raise ValueError("a unix:// URL needs the socket's path (unix:///run/redis.sock)")
            return cls(path=unquote(parts.path), username=username, password=password)
        try:
            port = parts.port or 6379
        except ValueError:
            raise ValueError("its port is not a number from 1 to 65535") from None
        db_text = parts.path.strip("/")
        if db_text and not db_text.isdigit():
            raise ValueError(f"the database {db_text!r} is not a number (redis://host:6379/0)")
        return cls(
            host=parts.hostname or "localhost",
            port=port,
            db=int(db_text or 0),
            username=username,
            password=password,
            tls=scheme == "rediss",
        )

    def __str__(self) -> str:
        return self.path if self.path is not None else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class Timeouts:
    #: to read a reply (a blocking command's own timeout must stay below it).
    read_s: float = 5.0
    #: to connect, log in and answer a health check.
    connect_s: float = 2.0


class Connection:
    """One connection; connects when it is first written to (again after it broke).
    Not thread-safe: one thread at a time (the pool hands it out)."""

    def __init__(self, address: Address, timeouts: Timeouts) -> None:
        self.address = address
        self.timeouts = timeouts
        self.pid = os.getpid()
        self._sock: socket.socket | None = None
        self._reader: Any = None
        self._used = 0.0
        #: the kernel times this socket's reads and writes out (see ``_KERNEL_TIMEOUTS``).
        self._kernel = False

    @property
    def connected(self) -> bool:
        return self._sock is not None

    def connect(self) -> None:
        self.close()
        address, timeout = self.address, self.timeouts.connect_s
        try:
            if address.path is not None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(timeout)
                try:
                    sock.connect(address.path)
                except OSError:
                    sock.close()
                    raise
            else:
                sock = socket.create_connection((address.host, address.port), timeout=timeout)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
                if address.tls:
                    sock = _tls(sock, address.host)
        except OSError as exc:
            raise ConnectionLost(f"cannot connect to {address}: {_why(exc)}") from exc
        self._sock = sock
        self._reader = hiredis.Reader(
            protocolError=_OutOfStep, replyError=ReplyError, encoding="utf-8"
        )
        self._used = time.monotonic()
        login: list[tuple[Any, ...]] = []
        if address.password is not None:
            who = (address.username,) if address.username else ()
            login.append(("AUTH", *who, address.password))
        if address.db:
            login.append(("SELECT", address.db))
        if login:
            self._send_now(login)
            for reply in [self.read() for _ in login]:
                if isinstance(reply, ReplyError):
                    self.close()
                    raise LoginRefused(f"Redis at {address} refused the login: {reply}")
        self._kernel = _KERNEL_TIMEOUTS and not address.tls
        if self._kernel:
            sock.settimeout(None)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, _timeval(self.timeouts.read_s))
        self._set_timeout(self.timeouts.read_s)

    def _set_timeout(self, seconds: float) -> None:
        """How long a read may wait from now on (a Python timeout: a write as well)."""
        sock = self._sock
        assert sock is not None
        if self._kernel:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _timeval(seconds))
        else:
            sock.settimeout(seconds)

    def send(self, commands: Sequence[tuple[Any, ...]]) -> None:
        """Write ``commands`` (connecting first when needed); read their replies with
        :meth:`read`, one each, in order."""
        if self._sock is None:
            self.connect()
        elif idle_too_long(time.monotonic() - self._used):
            self._check_health()
        self._send_now(commands)

    def _send_now(self, commands: Sequence[tuple[Any, ...]]) -> None:
        data = b"".join([hiredis.pack_command(c) for c in commands])
        try:
            assert self._sock is not None
            self._sock.sendall(data)
        except OSError as exc:
            self.close()
            raise ConnectionLost(f"cannot write to Redis at {self.address}: {_why(exc)}") from exc
        self._used = time.monotonic()

    def _check_health(self) -> None:
        self._set_timeout(self.timeouts.connect_s)
        try:
            self._send_now([("PING",)])
            self.read()
            self._set_timeout(self.timeouts.read_s)
        except ConnectionLost:
            self.connect()  # once more, afresh: this one raises when Redis is gone

    def read(self) -> Any:
        """The next reply: a value, or a :class:`ReplyError` value; raises
        :class:`ConnectionLost` (and closes) when none can be read."""
        reply = self.buffered()
        while reply is False:
            reply = self._receive(self.timeouts.read_s)
        return reply

    def poll(self, timeout_s: float) -> Any:
        """The next reply if one comes within ``timeout_s``, else ``False`` (a
        subscription waits so; the connection stays in step)."""
        reply = self.buffered()
        if reply is False:
            reply = self._receive(timeout_s, quiet=True)
        return reply

    def buffered(self) -> Any:
        """A reply already received and not read yet, else ``False``."""
        if self._reader is None:
            raise ConnectionLost(f"the connection to Redis at {self.address} is closed")
        try:
            return self._reader.gets()
        except _OutOfStep as exc:
            self.close()
            raise ConnectionLost(f"Redis at {self.address} sent what is not RESP: {exc}") from exc

    def _receive(self, timeout_s: float, *, quiet: bool = False) -> Any:
        sock = self._sock
        if sock is None:
            raise ConnectionLost(f"the connection to Redis at {self.address} is closed")
        try:
            if quiet:
                self._set_timeout(timeout_s)
            data = sock.recv(_READ_SIZE)
        except (TimeoutError, BlockingIOError) as exc:  # the kernel's timeout: EAGAIN
            if quiet:
                return False
            waited = sock.gettimeout() or timeout_s
            self.close()
            raise ConnectionLost(
                f"Redis at {self.address} did not answer within {waited:g} s"
            ) from exc
        except (OSError, ValueError) as exc:  # ValueError: closed by another thread
            self.close()
            raise ConnectionLost(f"cannot read from Redis at {self.address}: {_why(exc)}") from exc
        finally:
            if quiet and self._sock is not None:
                self._set_timeout(self.timeouts.read_s)
        self._feed(data)
        return self.buffered()

    def _feed(self, data: bytes) -> None:
        """Hand what a read returned to the parser (nothing: Redis closed it)."""
        if not data:
            self.close()
            raise ConnectionLost(f"Redis at {self.address} closed the connection")
        self._reader.feed(data)

    def fileno(self) -> int:
        """The socket's descriptor (-1 when not connected)."""
        return -1 if self._sock is None else self._sock.fileno()

    def set_nonblocking(self) -> None:
        """From now on (until it is connected again) reads and writes never wait: for an
        event loop that watches :meth:`fileno` (:meth:`receive_nowait`,
        :meth:`send_nowait`)."""
        if self._sock is not None:
            self._sock.setblocking(False)

    def receive_nowait(self) -> bool:
        """Take what the socket holds into the parser (read it with :meth:`buffered`):
        False when it held nothing; raises :class:`ConnectionLost` (and closes) when the
        connection broke."""
        sock = self._sock
        if sock is None:
            raise ConnectionLost(f"the connection to Redis at {self.address} is closed")
        try:
            data = sock.recv(_READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError as exc:
            self.close()
            raise ConnectionLost(f"cannot read from Redis at {self.address}: {_why(exc)}") from exc
        self._feed(data)
        return True

    def send_nowait(self, commands: Sequence[tuple[Any, ...]]) -> None:
        """Write short ``commands`` (a subscription's ping) on this connection as it is,
        blocking or not: no health check, no connecting. :meth:`send`'s health check
        reads a reply (in a subscription it may be a message) and connects afresh when
        none comes in time: a subscription then reads a connection subscribed to nothing."""
        if self._sock is None:
            raise ConnectionLost(f"the connection to Redis at {self.address} is closed")
        self._send_now(commands)

    def stale(self) -> bool:
        """Something is waiting to be read before anything was written: Redis closed it
        (it restarted) or a reply is stray. Such a connection must be made afresh."""
        sock = self._sock
        if sock is None:
            return False
        if self._reader.has_data():
            return True
        try:
            # TLS: a record already taken off the socket and not read yet
            pending = getattr(sock, "pending", None)
            if pending is not None and pending():
                return True
            # poll, not select: select cannot watch a descriptor above 1023 (a busy
            # server's), and would call every such connection stale
            poller = select.poll()
            poller.register(sock, select.POLLIN)
            return bool(poller.poll(0))
        except (OSError, ValueError):
            return True

    def drop_if_stale(self) -> None:
        """Close it when :meth:`stale`: its next use connects afresh."""
        if self.stale():
            self.close()

    def wake(self) -> None:
        """Make a :meth:`poll` in another thread return at once (it raises
        :class:`ConnectionLost`): shut the socket down without closing it."""
        sock = self._sock
        if sock is not None:
            with contextlib.suppress(OSError):
                socket.socket.shutdown(sock, socket.SHUT_RDWR)

    def close(self) -> None:
        sock, self._sock, self._reader = self._sock, None, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()


class Pool:
    """Idle connections to one address, shared by threads; a connection is taken for
    one exchange and given back. A process forked from this one makes its own."""

    def __init__(self, address: Address, timeouts: Timeouts) -> None:
        self.address = address
        self.timeouts = timeouts
        self._idle: list[Connection] = []
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def new(self) -> Connection:
        return Connection(self.address, self.timeouts)

    def take(self) -> Connection:
        with self._lock:
            if self._pid != os.getpid():  # forked: the parent's sockets are not ours
                self._pid, self._idle = os.getpid(), []
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            return self.new()
        conn.drop_if_stale()
        return conn

    def give(self, conn: Connection) -> None:
        if conn.pid != os.getpid():
            return
        with self._lock:
            self._idle.append(conn)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def after_fork_in_child(self) -> None:
        """A new lock (a thread of the parent may have held this one as the process
        forked) and none of the parent's sockets (dropped, not closed: they are its)."""
        self._lock = threading.Lock()
        self._pid, self._idle = os.getpid(), []


def idle_too_long(idle_s: float) -> bool:
    """Whether a connection unused for ``idle_s`` is checked before it is used again."""
    return idle_s > HEALTH_CHECK_AFTER_S


def _why(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    return exc.strerror or str(exc) if isinstance(exc, OSError) else str(exc)


def _tls(sock: socket.socket, host: str) -> socket.socket:
    import ssl  # only for rediss:// (about 5 MB a process)

    context = ssl.create_default_context()
    try:
        return context.wrap_socket(sock, server_hostname=host)
    except BaseException:
        sock.close()
        raise


__all__ = [
    "HEALTH_CHECK_AFTER_S",
    "Address",
    "Connection",
    "ConnectionLost",
    "Pool",
    "RedisError",
    "ReplyError",
    "Timeouts",
    "idle_too_long",
]
