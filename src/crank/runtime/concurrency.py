"""Per-capability concurrency limits (``max_concurrency``), held across worker processes.

A capability's limit comes from its manifest (``capabilities[].max_concurrency``)
or, at deploy time, from ``CRANK_MAX_CONCURRENCY=text.tokens=2,other.cap=8``.

The limit is a set of *slots*: lock files ``<dir>/<capability>.<n>.slot`` for
``n`` in ``0..limit-1``, in a directory every process of one ``crank run``
shares. A worker process takes a slot (a non-blocking ``flock``) before it runs
a task of a limited capability and lets it go when the task ends; without one,
the task goes back to the queue unrun and waits. The kernel drops the locks of
a process that dies, so a crash (even ``kill -9``) never leaks a slot. The HTTP
server checks whether every slot is held to refuse a synchronous or streaming
call beyond the limit with 429 instead of queueing it behind.

This is a limit on calls *running at once* for one capability, whatever the
number of worker processes; it is not a number of tasks per process.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from crank.errors import CrankError, UsageError

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from crank.manifest import Manifest

#: deploy-time overrides of the manifests' ``max_concurrency``.
LIMITS_ENV = "CRANK_MAX_CONCURRENCY"
#: the slot directory a ``crank run`` gives its worker processes.
SLOTS_DIR_ENV = "CRANK_CONCURRENCY_DIR"

_SAFE = re.compile(r"[^A-Za-z0-9._-]")


def parse_overrides(raw: str, *, where: str = LIMITS_ENV) -> dict[str, int]:
    """``"a.b=2, c.d=8"`` -> ``{"a.b": 2, "c.d": 8}``; a clear error for anything else."""
    limits: dict[str, int] = {}
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        capability, sep, value = (s.strip() for s in item.partition("="))
        number = int(value) if sep and value.isdigit() else 0
        if not capability or number < 1:
            raise UsageError(
                f"{where}: {item!r} is not CAPABILITY=N with N a positive whole number",
                hint=f"e.g. {where}=text.tokens=2,image.classify=8",
                subject=where,
            )
        limits[capability] = number
    return limits


def concurrency_limits(
    manifests: Iterable[Manifest], environ: Mapping[str, str] | None = None
) -> dict[str, int]:
    """capability id -> its limit: the manifests', then ``CRANK_MAX_CONCURRENCY`` over them."""
    declared: dict[str, int | None] = {}
    for manifest in manifests:
        for cap in manifest.capabilities:
            declared[cap.id] = cap.max_concurrency
    limits = {cap: limit for cap, limit in declared.items() if limit is not None}
    raw = (os.environ if environ is None else environ).get(LIMITS_ENV, "")
    overrides = parse_overrides(raw)
    unknown = sorted(set(overrides) - set(declared))
    if unknown:
        raise UsageError(
            f"{LIMITS_ENV} names {', '.join(unknown)}, which no served worker declares",
            hint=f"served capabilities: {', '.join(sorted(declared)) or 'none'}",
            subject=LIMITS_ENV,
        )
    limits.update(overrides)
    return limits


@dataclass
class Slot:
    """One held slot of a capability; :meth:`release` lets it go (at most once)."""

    capability: str
    index: int
    _owner: ConcurrencySlots | None

    def release(self) -> None:
        owner, self._owner = self._owner, None
        if owner is not None:
            owner._release(self)


class ConcurrencySlots:
    """The slots of every limited capability, as one process sees them (see the module)."""

    def __init__(
        self, directory: Path | str, limits: Mapping[str, int], *, kind: str = "slot"
    ) -> None:
        self.directory = Path(directory)
        self.limits = dict(limits)
        #: the files' suffix: ``slot`` for running tasks, ``call`` for admitted calls
        self.kind = kind
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        #: one open descriptor per slot file, kept for the life of the process.
        self._fds: dict[tuple[str, int], int] = {}
        #: the slots this process holds now (a lock it holds must not be taken twice).
        self._held: set[tuple[str, int]] = set()

    def limited(self, capability: str) -> bool:
        return capability in self.limits

    def _fd(self, key: tuple[str, int]) -> int:
        fd = self._fds.get(key)
        if fd is None:
            name = f"{_SAFE.sub('_', key[0])}.{key[1]}.{self.kind}"
            fd = os.open(self.directory / name, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            self._fds[key] = fd
        return fd

    def try_acquire(self, capability: str) -> Slot | None:
        """A free slot of ``capability``, or None when all are held (by any process)."""
        with self._lock:
            for index in range(self.limits[capability]):
                key = (capability, index)
                if key in self._held:
                    continue
                try:
                    fcntl.flock(self._fd(key), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue
                self._held.add(key)
                return Slot(capability, index, self)
        return None

    def _release(self, slot: Slot) -> None:
        key = (slot.capability, slot.index)
        with self._lock:
            if key in self._held:
                self._held.discard(key)
                fcntl.flock(self._fds[key], fcntl.LOCK_UN)

    def full(self, capability: str) -> bool:
        """True when every slot of ``capability`` is held, by this process or another.

        Slots are tried in order and the first free one is taken and let go at once
        to find out (workers take the lowest free slot, so that is soon); a worker
        trying that slot in the same instant takes the next one, or puts its task
        back to try again.
        """
        with self._lock:
            for index in range(self.limits.get(capability, 0)):
                key = (capability, index)
                if key in self._held:
                    continue
                fd = self._fd(key)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue
                fcntl.flock(fd, fcntl.LOCK_UN)
                return False
        return capability in self.limits

    def close(self) -> None:
        with self._lock:
            for fd in self._fds.values():
                with contextlib.suppress(OSError):
                    os.close(fd)  # closing drops this process's locks
            self._fds.clear()
            self._held.clear()


class ConcurrencyLimited(CrankError):
    """A synchronous or streaming call beyond its capability's limit (HTTP 429).

    ``calls``: the calls this server admitted and that have not answered yet, when they
    are what fills the limit (some may still wait in the queue for a worker); None when
    every slot is held by a running task (a queued task or another server's call).
    """

    def __init__(self, capability: str, limit: int, *, calls: int | None = None) -> None:
        if calls is not None:
            why = (
                f"{calls} synchronous or streaming call(s) of it are in progress on this "
                "server (running, or queued until a worker takes them)"
            )
        else:
            why = f"all {limit} of its slots are held by running tasks"
        super().__init__(
            f"{capability} is at its max_concurrency of {limit}: {why}",
            hint="retry after the Retry-After delay, when one may have ended; or queue it "
            "with POST /v1/tasks, where it waits for a free slot instead of being refused",
            subject=capability,
        )
        self.capability = capability
        self.limit = limit
        self.calls = calls


class CallAdmission:
    """The HTTP server's gate for synchronous and streaming calls of limited capabilities.

    A call is admitted while fewer than the limit are admitted and not finished *and*
    some slot is free (queued tasks that run take slots too); past it,
    :class:`ConcurrencyLimited`. Under ``crank run`` (``calls``) an admitted call holds
    a *call mark*, a lock file ``<capability>.<n>.call`` beside the slots, so the count
    is that of every HTTP process of the run (``--http-processes``), and a process that
    dies lets its marks go; without it (one process in a test) the count is this
    process's. The slots add what other callers started.
    """

    def __init__(
        self,
        limits: Mapping[str, int],
        slots: ConcurrencySlots | None = None,
        calls: ConcurrencySlots | None = None,
    ) -> None:
        self.limits = dict(limits)
        self.slots = slots
        self.calls = calls
        self._lock = threading.Lock()
        self._admitted: dict[str, int] = {}

    def admit(self, capability: str) -> Admitted:
        limit = self.limits.get(capability)
        if limit is None:
            return Admitted(capability, None)
        if self.calls is not None:
            mark = self.calls.try_acquire(capability)
            if mark is None:
                raise ConcurrencyLimited(capability, limit, calls=limit)
            if self.slots is not None and self.slots.full(capability):
                mark.release()
                raise ConcurrencyLimited(capability, limit)
            return Admitted(capability, None, mark)
        with self._lock:
            admitted = self._admitted.get(capability, 0)
            if admitted >= limit:
                raise ConcurrencyLimited(capability, limit, calls=admitted)
            if self.slots is not None and self.slots.full(capability):
                raise ConcurrencyLimited(capability, limit)
            self._admitted[capability] = admitted + 1
        return Admitted(capability, self)

    def _done(self, capability: str) -> None:
        with self._lock:
            self._admitted[capability] = max(0, self._admitted.get(capability, 0) - 1)


@dataclass
class Admitted:
    """An admitted call; :meth:`release` when its answer is complete (at most once)."""

    capability: str
    _gate: CallAdmission | None
    _mark: Slot | None = None

    def release(self) -> None:
        gate, self._gate = self._gate, None
        if gate is not None:
            gate._done(self.capability)
        mark, self._mark = self._mark, None
        if mark is not None:
            mark.release()


__all__ = [
    "LIMITS_ENV",
    "SLOTS_DIR_ENV",
    "Admitted",
    "CallAdmission",
    "ConcurrencyLimited",
    "ConcurrencySlots",
    "Slot",
    "concurrency_limits",
    "parse_overrides",
]
