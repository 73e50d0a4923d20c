"""Result notices: how a process waiting for a task learns that it ended, without polling.

A process that wants to know when tasks end *watches* them
(``Broker.submit_many(specs, watch=True)`` or ``Broker.watch(ids)``): the broker
records, next to each task, the address of that process's listener. Whoever ends
the task (an ack, a final failure, a dead letter) first stores the outcome in the
broker and then sends a :class:`Notice` to every address recorded for it; the
listener hands the notice to the waiters of the task in that process
(:class:`ResultNotices`). So durability is unchanged (a notice is only ever about
a result already stored) and a lost notice costs time, never a result: a waiter
that heard nothing reads the task from the broker every
:data:`~crank.runtime.brokers.contract.SAFETY_POLL_S`.

How a notice travels depends on the backend:

* Redis: ``PUBLISH`` on the channel of the listening process (one subscription
  per process, fanned out to its waiters), from inside the script that stores the
  outcome;
* SQLite: a datagram on a local socket (:class:`LocalChannel`) of the listening
  process, sent by the process that committed the outcome, right after the commit;
* memory: a direct call.

Wire format (both transports): ``<task id> <status> <attempts>`` and, when the
outcome is at most :data:`INLINE_LIMIT` bytes of JSON, a newline and that JSON
(the result of a succeeded task, the error of another). A notice without it only
says "read me". A streaming task's watchers are also told of each event it
publishes (``<task id> event <number>``), so a live stream is pushed too.
"""

from __future__ import annotations

import os
import socket
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crank.runtime.brokers.contract import Notice

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Callable, Iterable, Sequence

#: a watched task's notice nobody took is dropped after this long.
UNCLAIMED_TTL_S = 120.0


def _resolve(future: asyncio.Future[Notice | None], notice: Notice | None) -> None:
    if not future.done():
        future.set_result(notice)


class _Slot:
    """What one watched task's waiters share."""

    __slots__ = ("event", "futures", "notice", "refs", "since", "woken")

    def __init__(self) -> None:
        self.refs = 0
        self.notice: Notice | None = None
        self.event: threading.Event | None = None
        self.futures: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[Notice | None]]] = []
        self.since = time.monotonic()
        #: woken while nobody waited: the next wait returns at once (reads the broker)
        self.woken = False


class ResultNotices:
    """The waiters of one process for task notices, and the notices they wait for.

    ``expect`` a task before it can end (before it is submitted, or before the
    broker is asked to watch it), ``wait``/``wait_async`` for its notice, ``forget``
    it when done waiting. The listener calls :meth:`deliver` from its thread;
    :meth:`wake_all` (after the listener lost its connection, when notices may have
    been lost) makes every waiter look at the broker now.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._slots: dict[str, _Slot] = {}
        self._last_sweep = time.monotonic()
        #: notices delivered to this process so far (tests and metrics).
        self.delivered = 0

    def expect(self, task_ids: Iterable[str]) -> None:
        with self._lock:
            for task_id in task_ids:
                slot = self._slots.get(task_id)
                if slot is None:
                    slot = self._slots[task_id] = _Slot()
                slot.refs += 1

    def forget(self, task_id: str) -> None:
        with self._lock:
            slot = self._slots.get(task_id)
            if slot is not None:
                slot.refs -= 1
                if slot.refs <= 0:
                    del self._slots[task_id]

    def watching(self, task_id: str) -> bool:
        with self._lock:
            return task_id in self._slots

    def __len__(self) -> int:
        with self._lock:
            return len(self._slots)

    def deliver(self, notices: Iterable[Notice]) -> None:
        """Hand notices to their waiters (any thread); notices nobody expects are dropped."""
        wakeups: dict[asyncio.AbstractEventLoop, list[tuple[Any, Notice | None]]] = {}
        with self._lock:
            for notice in notices:
                slot = self._slots.get(notice.task_id)
                if slot is None:
                    continue
                self.delivered += 1
                if notice.ended:
                    slot.notice = notice
                if slot.event is not None:
                    slot.event.set()
                for loop, future in slot.futures:
                    wakeups.setdefault(loop, []).append((future, notice))
            self._sweep()
        _wake_loops(wakeups)

    def wake_all(self) -> None:
        """Every waiter stops waiting now and reads its task (notices may have been lost)."""
        wakeups: dict[asyncio.AbstractEventLoop, list[tuple[Any, Notice | None]]] = {}
        with self._lock:
            for slot in self._slots.values():
                if slot.event is None and not slot.futures:
                    slot.woken = True  # a waiter still on its way must not miss it
                if slot.event is not None:
                    slot.event.set()
                for loop, future in slot.futures:
                    wakeups.setdefault(loop, []).append((future, slot.notice))
        _wake_loops(wakeups)

    def _sweep(self) -> None:
        """Drop slots nobody forgot (a caller that stopped caring); under the lock."""
        now = time.monotonic()
        if now - self._last_sweep < UNCLAIMED_TTL_S:
            return
        self._last_sweep = now
        stale = [
            task_id
            for task_id, slot in self._slots.items()
            if now - slot.since > UNCLAIMED_TTL_S and not slot.futures and slot.event is None
        ]
        for task_id in stale:
            del self._slots[task_id]

    def wait(self, task_id: str, timeout_s: float) -> Notice | None:
        """The task's end notice, waiting up to ``timeout_s``; None when none came (or
        an event notice or :meth:`wake_all` woke it). The task must be expected."""
        with self._lock:
            slot = self._slots.get(task_id)
            if slot is None or slot.notice is not None:
                return None if slot is None else slot.notice
            if slot.woken:
                slot.woken = False
                return None
            if slot.event is None:
                slot.event = threading.Event()
            event = slot.event
        event.wait(max(0.0, timeout_s))
        with self._lock:
            event.clear()
            return slot.notice

    async def wait_async(self, task_id: str, timeout_s: float) -> Notice | None:
        """:meth:`wait` for asyncio (the event loop is not blocked); returns the notice
        that woke it, an event notice included (``notice.ended`` tells)."""
        import asyncio  # here: a worker process running sync handlers never loads it (~10 MB)

        loop = asyncio.get_running_loop()
        with self._lock:
            slot = self._slots.get(task_id)
            if slot is None or slot.notice is not None:
                return None if slot is None else slot.notice
            if slot.woken:
                slot.woken = False
                return None
            future: asyncio.Future[Notice | None] = loop.create_future()
            slot.futures.append((loop, future))
        timer = loop.call_later(max(0.0, timeout_s), _resolve, future, None)
        try:
            woke = await future
        finally:
            timer.cancel()
            with self._lock:
                slot.futures = [(lp, f) for lp, f in slot.futures if f is not future]
        return woke if woke is not None else slot.notice


def _resolve_all(items: list[tuple[Any, Notice | None]]) -> None:
    for future, notice in items:
        _resolve(future, notice)


def _wake_loops(wakeups: dict[asyncio.AbstractEventLoop, list[tuple[Any, Notice | None]]]) -> None:
    """The waiters of the event loop running here at once; one thread-safe call for
    each other loop, however many of its waiters woke."""
    if not wakeups:
        return
    here = running_loop()
    for loop, items in wakeups.items():
        if loop is here:
            _resolve_all(items)
            continue
        try:
            loop.call_soon_threadsafe(_resolve_all, items)
        except RuntimeError:  # that loop is closed: its waiters are gone
            continue


# -- a local datagram channel (SQLite's notices and wake-ups) -------------------------------


def _socket_address(address: str) -> str | bytes:
    # "@name" is a Linux abstract socket: no file to clean up, gone with its process
    return b"\0" + address[1:].encode() if address.startswith("@") else address


class LocalChannel:
    """A datagram socket other processes of this machine send short messages to.

    Its :attr:`address` is a string to store in the broker: on Linux an abstract
    socket name (``@crank-...``), elsewhere a path in the temp directory.
    """

    def __init__(self, purpose: str) -> None:
        name = f"crank-{purpose}-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self._path: str | None = None
        if sys.platform.startswith("linux"):
            self.address = f"@{name}"
        else:
            self._path = self.address = str(Path(tempfile.gettempdir()) / f"{name}.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            self.sock.bind(_socket_address(self.address))
        except OSError:
            self.sock.close()
            raise

    def receive(self, timeout_s: float | None) -> list[bytes]:
        """The messages waiting, waiting up to ``timeout_s`` for the first ([] when none)."""
        sock = self.sock
        sock.settimeout(timeout_s)
        try:
            messages = [sock.recv(65_536)]
        except (TimeoutError, BlockingIOError):
            return []
        sock.setblocking(False)
        try:
            while True:
                messages.append(sock.recv(65_536))
        except (BlockingIOError, InterruptedError):
            return messages

    def drain(self) -> int:
        """Throw away the messages waiting; returns how many there were."""
        return len(self.receive(0.0))

    def close(self) -> None:
        self.sock.close()
        if self._path is not None:
            Path(self._path).unlink(missing_ok=True)


class LocalSender:
    """Sends datagrams to :class:`LocalChannel` addresses.

    A receiver's queue holds few datagrams (Linux: ``net.unix.max_dgram_qlen``, 10 by
    default), fewer than a batch's worth of notices sent at once. A message sent with
    ``wait=True`` (a result notice, which a caller waits for) waits on a full queue for
    up to ``wait_s`` while the receiver drains it; one without (a wake-up: a hint to a
    worker that is busy anyway when its queue is full) is dropped at once. A receiver that stays
    full that long, or is gone, is skipped (the waiters' safety poll covers a lost
    notice), and for ``backoff_s`` after such a wait every send to a full queue is
    skipped at once, so a stuck receiver cannot slow the sender down message by message.
    """

    def __init__(self, wait_s: float = 0.5, backoff_s: float = 1.0) -> None:
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self.wait_s = wait_s
        self.backoff_s = backoff_s
        self._congested_until = 0.0
        #: datagrams delivered, and messages not (a receiver gone or full): diagnostics
        self.sent = 0
        self.dropped = 0

    def send(self, address: str, message: bytes, *, wait: bool = False) -> bool:
        with self._lock:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._sock.setblocking(False)
            sock, target = self._sock, _socket_address(address)
            try:
                sock.sendto(message, target)
                self.sent += 1
                return True
            except BlockingIOError:  # its queue is full: wait for the receiver to drain it
                pass
            except OSError:  # the listener exited
                self.dropped += 1
                return False
            if not wait or time.monotonic() < self._congested_until:
                self.dropped += 1
                return False
            sock.settimeout(self.wait_s)
            try:
                sock.sendto(message, target)
                self.sent += 1
                return True
            except OSError:  # still full after wait_s (TimeoutError), or gone meanwhile
                self._congested_until = time.monotonic() + self.backoff_s
                self.dropped += 1
                return False
            finally:
                sock.setblocking(False)

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None


#: between the notices of one datagram: a byte no notice holds (the head is an id, a
#: status and a number; the body is JSON text, where a NUL is always escaped).
BUNDLE_SEPARATOR = b"\0"
#: the largest datagram of bundled notices (a receiver reads up to 64 KiB at once).
BUNDLE_BYTES = 60_000


def bundles(messages: Sequence[bytes]) -> list[bytes]:
    """``messages`` (notices to one address) as few datagrams as fit: a batch's acks
    reach the waiting server in one or two datagrams, not one each, which a receiver's
    queue (``net.unix.max_dgram_qlen``: 10) could not hold."""
    out: list[bytes] = []
    current: list[bytes] = []
    size = 0
    for message in messages:
        if current and size + len(message) + 1 > BUNDLE_BYTES:
            out.append(BUNDLE_SEPARATOR.join(current))
            current, size = [], 0
        current.append(message)
        size += len(message) + 1
    if current:
        out.append(BUNDLE_SEPARATOR.join(current))
    return out


class ChannelThread:
    """A thread reading a :class:`LocalChannel`, handing each batch of messages to
    ``handle`` (which must not raise); or, after :meth:`read_on`, an event loop."""

    def __init__(self, purpose: str, handle: Callable[[list[bytes]], None]) -> None:
        self.channel = LocalChannel(purpose)
        self._handle = handle
        self._stop = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = threading.Thread(
            target=self._run, name=f"crank-{purpose}", daemon=True
        )
        self._thread.start()

    @property
    def address(self) -> str:
        return self.channel.address

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                messages = self.channel.receive(0.2)
            except OSError:
                return  # closed under us
            if messages:
                self._handle(messages)

    def read_on(self, loop: asyncio.AbstractEventLoop) -> None:
        """From now on ``loop`` (running in this thread) reads the channel, and the
        thread stops: a message reaches its handler without a thread hop (the
        socket's address, stored in the broker, stays the same)."""
        if self._loop is not None:
            return
        if self._thread is not None:
            self._stop.set()
            self._thread.join()  # at most one receive timeout: it must not read any more
            self._thread = None
        self.channel.sock.setblocking(False)
        loop.add_reader(self.channel.sock.fileno(), self._readable)
        self._loop = loop
        self._readable()  # what came while the thread was stopping

    def _readable(self) -> None:
        sock = self.channel.sock
        messages: list[bytes] = []
        try:
            while True:
                messages.append(sock.recv(65_536))
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            return  # closed under us
        if messages:
            self._handle(messages)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                if running_loop() is loop:
                    loop.remove_reader(self.channel.sock.fileno())
                else:  # the socket closes on its loop, once no longer watched there
                    loop.call_soon_threadsafe(self._close_on_loop, loop)
                    return
            except RuntimeError:  # closed meanwhile
                pass
        self.channel.close()

    def _close_on_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.remove_reader(self.channel.sock.fileno())
        self.channel.close()


def running_loop() -> asyncio.AbstractEventLoop | None:
    """The event loop running in this thread, if any (only asked where one may run:
    asyncio is loaded by then; a worker process of sync handlers never loads it)."""
    import asyncio

    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class ChannelListener(ChannelThread):
    """A thread (or, after :meth:`read_on`, an event loop) reading a
    :class:`LocalChannel` and delivering its notices."""

    def __init__(self, notices: ResultNotices) -> None:
        self.notices = notices
        super().__init__("result-notices", self._deliver)

    def _deliver(self, messages: list[bytes]) -> None:
        notices = [
            notice
            for message in messages
            for part in message.split(BUNDLE_SEPARATOR)
            if (notice := Notice.decode(part)) is not None
        ]
        if notices:
            self.notices.deliver(notices)


__all__ = [
    "BUNDLE_BYTES",
    "BUNDLE_SEPARATOR",
    "ChannelListener",
    "ChannelThread",
    "LocalChannel",
    "LocalSender",
    "ResultNotices",
    "bundles",
    "running_loop",
]
