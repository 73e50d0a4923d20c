"""The embedded default broker: one SQLite file in WAL mode, safe across processes.

Every write runs in ``BEGIN IMMEDIATE`` (one writer at a time), and a claim is one
``UPDATE ... RETURNING`` over the best ``limit`` visible rows, so two processes can
never claim the same task. Writers take turns on an ``flock`` of ``<file>-write``
before they begin: SQLite's own wait for its write lock (``busy_timeout``) sleeps
1, 2, 5, 10 ms... between tries, so with a server and two workers writing, one
transaction in eight waited a millisecond or more for the lock (p99 8 ms); a
writer that finds the turn taken tries again every 50-200 us (up to
``busy_timeout``, then the error SQLite would give). ``busy_timeout`` still covers
writers that do not take the turn (another program, or the file lock could not be
made: an unwritable folder).
A running task's ``visible_at`` is its lease expiry: past it, the task is
visible again and the next claim redelivers it. ``synchronous=NORMAL`` keeps
every commit safe against a process crash (WAL), not against power loss.

Checkpoints (copying the WAL back into the database file, with an fsync) do
not run inside a commit, where SQLite's automatic checkpoint would put them:
there they added milliseconds to whichever submit, claim or ack crossed the
threshold (the round trip's p99). One open broker per database file checkpoints
(the one holding an exclusive ``flock`` on ``<file>-checkpoint``; the others wait
for it, and one of them takes over within ``_CHECKPOINT_EVERY_S`` when its holder
closes or dies): a thread that runs a ``PASSIVE`` checkpoint every
``_CHECKPOINT_EVERY_S`` on its own connection, when something was committed since
its last complete one. It never blocks readers or writers, and the WAL is bounded
as long as one process has the queue open. One checkpointer, not one per process:
SQLite before 3.51.3 has a race between two connections' back-to-back
checkpoints and a commit that restarts the WAL which can corrupt the database
(SQLite's "WAL-reset bug"); with one connection checkpointing, and only after
new commits, that pattern cannot come from crank's own checkpoints.

Nobody polls for news, both ways over local datagram sockets
(:class:`~crank.runtime.brokers.notices.LocalChannel`):

* results: a process watching a task has its listener's address in
  ``task_waiters``; whoever ends the task sends the notice there right after the
  commit that stored the outcome;
* new work: a worker waiting for tasks lists its address in ``wake_listeners``; a
  submit (or a release, a recover) sends each a byte after its commit. A worker
  listed anew still looks at ``PRAGMA data_version`` every ``_WAKE_FALLBACK_S``
  until every producer has re-read the addresses (a producer that has not seen it
  yet), and every waiting worker claims every ``_RESCAN_S`` (leases and retry
  backoffs that ran out).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sqlite3
import threading
import time
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from crank.errors import BrokerError, UsageError
from crank.runtime.brokers.common import (
    CANCELLED_BEFORE_IT_RAN,
    CANCELLED_WHILE_IT_RAN,
    CANCELLED_WORKER_GONE,
    BrokerOptions,
    EndedByClaims,
    cancelled_error,
    new_id,
    reset_in_forked_children,
    worker_lost_error,
)
from crank.runtime.brokers.contract import (
    FINAL_STATUSES,
    Broker,
    Cancellation,
    Claim,
    ClaimOptions,
    DeadLetterChange,
    IdempotencyKeyReused,
    Notice,
    QueueStats,
    Submitted,
    TaskPage,
    TaskQuery,
    TaskRecord,
    TaskSpec,
    TaskStatus,
    TaskSummary,
    input_fingerprint,
    priority_band,
)
from crank.runtime.brokers.notices import (
    ChannelListener,
    ChannelThread,
    LocalChannel,
    LocalSender,
    ResultNotices,
    bundles,
)
from crank.runtime.sqlite_wal import use_wal

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Callable, Iterator, Mapping, Sequence

SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
    id TEXT PRIMARY KEY,
    capability TEXT NOT NULL,
    payload TEXT NOT NULL,
    status TEXT NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL DEFAULT 3,
    idempotency_key TEXT UNIQUE,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    visible_at REAL NOT NULL,
    consumer TEXT,
    receipt TEXT,
    result TEXT,
    error TEXT,
    timeout_s REAL,
    meta TEXT,
    expires_at REAL,
    caller TEXT,
    cancel_requested REAL,
    backing_off INTEGER
);
CREATE TABLE IF NOT EXISTS task_events (
    task_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    event TEXT NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (task_id, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS task_events_expiry ON task_events (expires_at);
CREATE TABLE IF NOT EXISTS task_waiters (
    task_id TEXT NOT NULL,
    address TEXT NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (task_id, address)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS cancel_listeners (
    consumer TEXT PRIMARY KEY,
    address TEXT NOT NULL,
    updated_at REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS wake_listeners (
    address TEXT PRIMARY KEY,
    updated_at REAL NOT NULL
) WITHOUT ROWID;
"""

#: the tasks table's indexes, made after :func:`_add_new_columns` (some index a column
#: added since the first version). Those an earlier crank made and no longer used are
#: dropped: each index costs every write.
INDEXES = """
DROP INDEX IF EXISTS tasks_ready;
DROP INDEX IF EXISTS tasks_ready_by_capability;
DROP INDEX IF EXISTS tasks_leases;
DROP INDEX IF EXISTS tasks_backing_off;
CREATE INDEX IF NOT EXISTS tasks_queued
    ON tasks (capability, priority DESC, visible_at)
    WHERE status IN ('pending', 'retrying') AND backing_off IS NULL;
CREATE INDEX IF NOT EXISTS tasks_backoff ON tasks (visible_at, capability, priority)
    WHERE status IN ('pending', 'retrying') AND backing_off IS NOT NULL;
CREATE INDEX IF NOT EXISTS tasks_leased ON tasks (capability, visible_at)
    WHERE status = 'running';
CREATE INDEX IF NOT EXISTS tasks_consumer ON tasks (consumer) WHERE consumer IS NOT NULL;
CREATE INDEX IF NOT EXISTS tasks_dead ON tasks (updated_at) WHERE status = 'dead';
CREATE INDEX IF NOT EXISTS tasks_expiry ON tasks (expires_at) WHERE expires_at IS NOT NULL;
"""

#: columns added to the schema since its first version, with their declarations: a
#: queue file written before gets them when it is opened (:func:`_add_new_columns`).
_ADDED_COLUMNS = (("caller", "TEXT"), ("cancel_requested", "REAL"), ("backing_off", "INTEGER"))

_COLUMNS = (
    "id, capability, payload, status, priority, attempts, max_attempts, idempotency_key, "
    "created_at, updated_at, result, error, timeout_s, meta, cancel_requested"
)
#: how a task whose worker held it when it was cancelled ends (see ``Broker.cancel``).
_END_CANCELLED = (
    "UPDATE tasks SET status = 'cancelled', error = ?, attempts = ?, updated_at = ?, "
    "expires_at = ?, consumer = NULL, receipt = NULL WHERE id = ?"
)
#: what a list shows of a task (:class:`TaskSummary`), after its rowid (the cursor).
_SUMMARY_COLUMNS = (
    "rowid, id, capability, status, priority, attempts, max_attempts, created_at, updated_at, "
    "error, meta"
)
#: what ``release`` and ``recover`` set: a task goes back to the queue, unless it was
#: cancelled while held; then it ends (parameters: its error, expiry, now).
_PENDING_UNLESS_CANCELLED = (
    "status = CASE WHEN cancel_requested IS NULL THEN 'pending' ELSE 'cancelled' END, "
    "error = CASE WHEN cancel_requested IS NULL THEN error ELSE ? END, "
    "expires_at = CASE WHEN cancel_requested IS NULL THEN expires_at ELSE ? END, "
    "visible_at = created_at, updated_at = ?, consumer = NULL, receipt = NULL"
)
#: what becomes of a dead letter (see :func:`_apply`).
_REDRIVE, _PURGE = "redrive", "purge"
_PURGE_EVERY_S = 30.0
#: the most rows one write transaction of a bulk change takes: the expired rows of a
#: table one purge deletes, the dead letters one step of a bulk redrive or purge
#: changes. A purge of 200,000 expired results at once held the write lock for a second
#: (every submit and claim waited); 2,000 take about 20 ms here, and the next write
#: goes on while more are left.
_BULK_MOST = 2_000
_RESCAN_S = 0.05
#: a writer that finds the writers' turn taken tries again after this, then twice as
#: long each time up to the most (see the module docstring).
_TURN_PAUSE_S = 50e-6
_TURN_PAUSE_MAX_S = 200e-6
#: how often each open broker checkpoints the WAL (see the module docstring).
_CHECKPOINT_EVERY_S = 0.2
#: longest pause between two looks of a blocking ``read_events``.
_EVENT_POLL_MAX_S = 0.02
#: a waiting worker's look at ``PRAGMA data_version`` when no wake-up came, while
#: producers may not know its address yet (see :meth:`SqliteBroker._wait_for_change`).
_WAKE_FALLBACK_S = 0.01
#: a waiting worker renews its ``wake_listeners`` row this often ...
_WAKE_RENEW_S = 30.0
#: ... and producers ignore rows older than this.
_WAKE_STALE_S = 3 * _WAKE_RENEW_S
#: producers re-read the worker addresses to wake at most this often (a tiny table):
#: a worker listed anew waits up to ``_WAKE_FALLBACK_S`` for a task until then. At 1 s,
#: the round trips of the first second after workers started took 10 ms.
_WAKE_REFRESH_S = 0.1


#: the capabilities that have ready tasks: one index seek each (a claim of any
#: capability reads them first).
_READY_CAPABILITIES = (
    "WITH RECURSIVE ready(capability) AS (SELECT MIN(capability) FROM tasks "
    "WHERE status IN ('pending', 'retrying') AND backing_off IS NULL "
    "UNION ALL SELECT (SELECT MIN(capability) FROM tasks "
    "WHERE status IN ('pending', 'retrying') AND backing_off IS NULL "
    "AND capability > ready.capability) "
    "FROM ready WHERE ready.capability IS NOT NULL) "
    "SELECT capability FROM ready WHERE capability IS NOT NULL"
)
#: retries whose backoff ran out join the queued tasks (the claim's index), at most
#: ``_QUEUE_RETRIES_MOST`` per claim, the first due first. Backing off, they are
#: in an index of their own, by due time: in the claim's index, where they used to
#: be, each claim walked past all of them (they are not visible yet), so while a
#: downstream outage had 20,000 tasks backing off, every claim and every "anything
#: claimable?" read stepped through the 20,000.
_QUEUE_DUE_RETRIES = (
    "UPDATE tasks SET backing_off = NULL WHERE rowid IN (SELECT rowid FROM tasks "
    "WHERE status IN ('pending', 'retrying') AND backing_off IS NOT NULL AND visible_at <= ? "
    "ORDER BY visible_at LIMIT ?)"
)
_QUEUE_RETRIES_MOST = 1_000
#: claims of more capabilities than this take one sorted scan, not a query each
#: (SQLite joins at most 500 queries in one statement).
_UNION_MOST = 64


#: a claim: the rows ``{rows}`` selects become running. Parameters: consumer, receipt,
#: visible_at, updated_at, then those of ``{rows}``.
_TAKE = (
    "UPDATE tasks SET status = 'running', attempts = attempts + 1, consumer = ?, "  # noqa: S608 - constants and placeholders only
    "receipt = ?, visible_at = ?, updated_at = ?, backing_off = NULL WHERE rowid IN ({rows}) "
    f"RETURNING {_COLUMNS}"
)


@lru_cache(maxsize=_UNION_MOST)
def _claim_ready_sql(capabilities: int) -> str:
    """The claim of ready tasks for ``capabilities`` named capabilities: the first
    ``limit`` of each, read from that capability's own index entries, then the first
    ``limit`` of those, by priority and age.

    It replaces one scan of a ready index in priority order filtered by capability,
    which walked past every task of every other capability queued ahead: with
    200,000 of another capability's tasks ahead, a claim held the write lock 36 ms
    (every submit waited). Parameters after :data:`_TAKE`'s own: (capability, now,
    limit) for each capability, then limit.
    """
    one = (
        "SELECT rowid, priority, visible_at FROM tasks INDEXED BY tasks_queued "
        "WHERE status IN ('pending', 'retrying') AND backing_off IS NULL "
        "AND capability = ? AND visible_at <= ? "
        "ORDER BY priority DESC, visible_at LIMIT ?"
    )
    union = " UNION ALL ".join(f"SELECT * FROM ({one})" for _ in range(capabilities))  # noqa: S608 - constants only
    rows = f"SELECT rowid FROM ({union}) ORDER BY priority DESC, visible_at LIMIT ?"  # noqa: S608 - constants only
    return _TAKE.format(rows=rows)


def _record(row: Sequence[Any]) -> TaskRecord:
    return TaskRecord(
        id=row[0],
        capability=row[1],
        payload=json.loads(row[2]),
        status=row[3],
        priority=row[4],
        attempts=row[5],
        max_attempts=row[6],
        idempotency_key=row[7],
        created_at=row[8],
        updated_at=row[9],
        result=None if row[10] is None else json.loads(row[10]),
        error=None if row[11] is None else json.loads(row[11]),
        timeout_s=row[12],
        meta={} if not row[13] else json.loads(row[13]),
        cancel_requested_at=row[14],
    )


def _summary(row: Sequence[Any]) -> TaskSummary:
    """A list's row (:data:`_SUMMARY_COLUMNS`, rowid first) as a summary."""
    meta = {} if not row[10] else json.loads(row[10])
    requested, caller = meta.get("requested"), meta.get("caller")
    return TaskSummary(
        id=row[1],
        capability=row[2],
        status=row[3],
        priority=row[4],
        attempts=row[5],
        max_attempts=row[6],
        created_at=row[7],
        updated_at=row[8],
        requested=requested if isinstance(requested, str) else row[2],
        caller=caller if isinstance(caller, str) else None,
        error=None if row[9] is None else json.loads(row[9]),
    )


def _add_new_columns(db: sqlite3.Connection) -> None:
    """Give a queue file from an earlier crank the columns added since (no data moves)."""
    have = {row[1] for row in db.execute("PRAGMA table_info(tasks)")}
    for name, declaration in _ADDED_COLUMNS:
        if name not in have:
            db.execute(f"ALTER TABLE tasks ADD COLUMN {name} {declaration}")


def _caller(meta: Mapping[str, Any] | None) -> str | None:
    caller = (meta or {}).get("caller")
    return caller if isinstance(caller, str) else None


def _existing(row: Sequence[Any], spec: TaskSpec) -> Submitted:
    """The task that owns ``spec``'s idempotency key, if it was made from the same request."""
    first = _record(row)
    same = input_fingerprint(first.capability, first.payload)
    if same != input_fingerprint(spec.capability, spec.payload):
        return IdempotencyKeyReused(str(spec.idempotency_key))
    return first


def _apply(
    db: sqlite3.Connection, change: str, where: str, params: tuple[Any, ...], now: float
) -> int:
    """Redrive or purge the dead letters ``where`` picks (``t`` is the task); how many.

    A redriven task is queued as if new, after what waits at its priority; its events
    stay (new ones are numbered after them, as for a retry). A purged one is deleted
    with its events and waiters (its idempotency key goes with its row).
    """
    picked = f"SELECT t.id FROM tasks AS t WHERE t.status = 'dead' AND {where}"  # noqa: S608 - constants
    if change == _REDRIVE:
        redrive = (
            "UPDATE tasks SET status = 'pending', attempts = 0, error = NULL, result = NULL, "  # noqa: S608 - constants
            "visible_at = ?, updated_at = ?, expires_at = NULL, cancel_requested = NULL, "
            "backing_off = NULL, "
            f"consumer = NULL, receipt = NULL WHERE id IN ({picked})"
        )
        cur = db.execute(redrive, (now, now, *params))
        return int(cur.rowcount)
    for table in ("task_events", "task_waiters"):
        db.execute(f"DELETE FROM {table} WHERE task_id IN ({picked})", params)  # noqa: S608
    cur = db.execute(f"DELETE FROM tasks WHERE id IN ({picked})", params)  # noqa: S608
    return int(cur.rowcount)


#: SQLite's answers for a path that is no queue crank can use, whenever it is tried:
#: not a database (26), cannot open it (14: a folder, a missing or unreadable one),
#: access refused (3), read-only (8).
_NOT_A_QUEUE = frozenset({3, 8, 14, 26})


def _not_a_queue(exc: BaseException) -> bool:
    """Whether opening the queue failed for a reason no retry changes."""
    if isinstance(exc, (PermissionError, NotADirectoryError, IsADirectoryError)):
        return True
    return getattr(exc, "sqlite_errorcode", None) in _NOT_A_QUEUE


#: what forked children inherited of their parent's brokers (connections, the turn's
#: file): kept, never closed in the child (see ``SqliteBroker._after_fork_in_child``).
_INHERITED: list[tuple[Any, ...]] = []


class _OpenOnFirstUse:
    """A forked child's main connection until it is used: then the child's own."""

    def __init__(self, broker: SqliteBroker) -> None:
        self._broker = broker

    def execute(self, *args: Any) -> sqlite3.Cursor:
        return self._broker._open_in_child().execute(*args)

    def close(self) -> None:
        """Never opened: nothing to close."""


class SqliteBroker(Broker):
    """A task queue in one SQLite file; open one per process (or per thread)."""

    def __init__(
        self,
        path: str | Path,
        *,
        url: str | None = None,
        retry_base_s: float = 0.5,
        retry_max_s: float = 60.0,
        result_ttl_s: float = 86_400.0,
        busy_timeout_ms: int = 30_000,
    ) -> None:
        self.path = Path(path)
        self.url = url or f"sqlite:///{self.path}"
        self.options = BrokerOptions(retry_base_s, retry_max_s, result_ttl_s)
        self._lock = threading.RLock()
        #: a second connection for the long reads (stats, lists): they hold nothing
        #: this process's writers wait for (opened on first use).
        self._aside_db: sqlite3.Connection | None = None
        self._aside_lock = threading.Lock()
        #: this process's writers, one at a time (then the writers' turn, then _lock).
        self._writers = threading.Lock()
        self._busy_timeout_s = busy_timeout_ms / 1000
        #: the writers' turn (see the module docstring); None: SQLite's busy wait alone.
        self._turn: int | None = None
        self._last_purge = 0.0
        #: sends result notices and wake-ups to other processes' channels.
        self._sender = LocalSender()
        #: this process's result listener (on first use) and its worker wake channel.
        self._listener: ChannelListener | None = None
        self._wake: LocalChannel | None = None
        self._wake_renewed = 0.0
        #: from when every producer has this worker's wake address (monotonic clock).
        self._wake_known_at = float("inf")
        #: the addresses of waiting workers, re-read every ``_WAKE_REFRESH_S``.
        self._wake_addresses: list[str] = []
        self._wake_read_at = -_WAKE_REFRESH_S
        made_turn_file = False
        try:
            if self.path.parent and not self.path.parent.exists():
                self.path.parent.mkdir(parents=True, exist_ok=True)
            made_turn_file = self._open_turn_file()
            self._db = self._connect(wal=True)
            with self._write() as db:
                for statement in SCHEMA.split(";"):
                    if statement.strip():
                        db.execute(statement)
                _add_new_columns(db)
                for statement in INDEXES.split(";"):
                    if statement.strip():
                        db.execute(statement)
        except (sqlite3.Error, OSError) as exc:
            self._forget_turn_file(made_turn_file)
            if _not_a_queue(exc):
                # no retry opens it: the URL names a path crank cannot use (exit 2, not 3)
                raise UsageError(
                    f"cannot open the SQLite queue {self.path}: {exc}",
                    hint="point the broker URL at a crank queue file, or at a new file in a "
                    "folder this user can write (sqlite:///crank-queue.db)",
                    subject=str(self.path),
                ) from exc
            raise BrokerError(
                f"cannot open the SQLite queue {self.path}: {exc}",
                hint="check that the directory exists and is writable, and that the file "
                "is a crank queue (or remove it)",
                subject=str(self.path),
            ) from exc
        self._closed = threading.Event()
        self._ended = EndedByClaims()
        #: whether this broker is the one checkpointing its file (holds the lock).
        self._checkpoints_now = False
        #: the checkpoint lock's file, while the checkpointer has it open.
        self._checkpoint_file: int | None = None
        self._checkpointer = self._start_checkpointer()
        reset_in_forked_children(self)

    def _start_checkpointer(self) -> threading.Thread:
        thread = threading.Thread(
            target=self._checkpoint_loop, name="crank-sqlite-checkpoint", daemon=True
        )
        thread.start()
        return thread

    def _connect(self, *, wal: bool = False) -> sqlite3.Connection:
        """This process's main connection (``wal``: the first one, which also puts the
        file in WAL mode if it is not yet)."""
        db = sqlite3.connect(
            str(self.path), isolation_level=None, check_same_thread=False, timeout=30.0
        )
        db.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_s * 1000)}")
        if wal:
            use_wal(db, timeout_s=self._busy_timeout_s)
        db.execute("PRAGMA synchronous = NORMAL")
        db.execute("PRAGMA wal_autocheckpoint = 0")  # the checkpointer does it
        return db

    def _after_fork_in_child(self) -> None:
        """A forked child (a program that forks after ``connect``) gets a broker of its own.

        Local sockets: bound again on first use: a notice sent to the parent's reaches
        whichever process reads first (the parent, which drops it), and closing them here
        would unlist the parent's wake channel (and unlink its sockets where they are
        files). They are dropped, not closed.

        Locks: threads do not survive a fork, so a lock one of the parent's threads held
        at that moment (a submit, a read) would stay held in the child for ever: new ones.

        Connections: SQLite's own rule is that a connection is not carried across a fork
        (its locks belong to the process that took them), so the child opens its own on
        first use (no I/O here: this runs between fork and exec too). The parent's are
        kept, never closed here, so nothing of theirs is cleaned up under the parent.
        The writers' turn is an ``flock``, which belongs to the open file the two would
        share: the child opens the file again.

        Checkpoints: the parent's checkpointer thread is not in the child, but its open
        lock file is, and an ``flock`` lasts while any copy of it is open: the child
        would keep the lock after its parent ended, and no process would checkpoint
        again. The child closes its copy (the parent keeps its lock) and starts a
        checkpointer of its own with its connection."""
        checkpoint_file, self._checkpoint_file = self._checkpoint_file, None
        if checkpoint_file is not None:
            with contextlib.suppress(OSError):
                os.close(checkpoint_file)
        self._checkpoints_now = False
        closed = self._closed.is_set()
        self._closed = threading.Event()  # its lock may be held by a thread of the parent
        if closed:
            self._closed.set()
        self._listener = None
        self._wake = None
        self._wake_renewed = 0.0
        self._wake_known_at = float("inf")
        _INHERITED.append((self._db, self._aside_db, self._turn))
        self._lock = threading.RLock()
        self._writers = threading.Lock()
        self._aside_lock = threading.Lock()
        self._aside_db = None
        self._db = _OpenOnFirstUse(self)  # type: ignore[assignment]
        self._turn = None
        with contextlib.suppress(OSError):
            self._turn = os.open(f"{self.path}-write", os.O_RDONLY)

    def _open_in_child(self) -> sqlite3.Connection:
        """The forked child's own connection, opened by its first use (under _lock), and
        its checkpointer (threads are started here, not between fork and exec)."""
        try:
            db = self._connect()
        except sqlite3.Error as exc:
            raise self._error("open the queue again in a forked process", exc) from exc
        self._db = db
        if not self._closed.is_set():
            self._checkpointer = self._start_checkpointer()
        return db

    # -- plumbing --------------------------------------------------------------

    def _open_turn_file(self) -> bool:
        """Open ``<file>-write``, the writers' turn, creating it if need be; whether this
        call created it. Read-only and readable by all: flock needs no write access, so
        the users sharing a queue file all take turns, whoever made the lock file; none
        to be had (an unwritable folder): SQLite's busy wait alone."""
        turn_file = f"{self.path}-write"
        with contextlib.suppress(OSError):
            try:
                self._turn = os.open(turn_file, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:  # O_CREAT as well: a folder there fails (EISDIR)
                self._turn = os.open(turn_file, os.O_RDONLY | os.O_CREAT, 0o644)
                return False
            return True
        return False

    def _forget_turn_file(self, made: bool) -> None:
        """After the queue failed to open: close the turn file, and remove it when this
        broker made it, so that no stray ``<file>-write`` sits next to a file (or in a
        folder) that is no queue. Whoever opened it meanwhile failed to open the queue
        too."""
        db = getattr(self, "_db", None)
        if db is not None:
            db.close()
        if self._turn is not None:
            os.close(self._turn)
            self._turn = None
        if made:
            with contextlib.suppress(OSError):
                Path(f"{self.path}-write").unlink()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One IMMEDIATE transaction: takes the write lock first, so no upgrade deadlocks."""
        # this process's writers queue here, so a thread waiting for the turn does not
        # hold the connection (self._lock) from this process's readers
        with self._writers:
            self._take_turn()
            try:
                with self._lock:
                    try:
                        self._db.execute("BEGIN IMMEDIATE")
                    except sqlite3.Error as exc:
                        raise self._error("begin a transaction", exc) from exc
                    try:
                        yield self._db
                    except BaseException:
                        self._db.execute("ROLLBACK")
                        raise
                    else:
                        try:
                            self._db.execute("COMMIT")
                        except sqlite3.Error as exc:
                            self._db.execute("ROLLBACK")
                            raise self._error("commit", exc) from exc
            finally:
                if self._turn is not None:
                    fcntl.flock(self._turn, fcntl.LOCK_UN)

    def _take_turn(self) -> None:
        """The writers' ``flock``, tried every 50-200 us until ``busy_timeout``."""
        turn = self._turn
        if turn is None:
            return
        pause, deadline = _TURN_PAUSE_S, None
        while True:
            try:
                fcntl.flock(turn, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                pass
            now = time.monotonic()
            if deadline is None:
                deadline = now + self._busy_timeout_s
            elif now >= deadline:
                raise BrokerError(
                    f"SQLite queue {self.path}: cannot begin a transaction: another process "
                    f"held the write lock for {self._busy_timeout_s:g} s",
                    hint="another process may hold the database locked (a stopped or "
                    "stuck crank process), or the disk is slow",
                    subject=str(self.path),
                )
            time.sleep(pause)
            pause = min(2 * pause, _TURN_PAUSE_MAX_S)

    def _error(self, what: str, exc: sqlite3.Error) -> BrokerError:
        return BrokerError(
            f"SQLite queue {self.path}: cannot {what}: {exc}",
            hint="another process may hold the database locked for too long, or the disk is full",
            subject=str(self.path),
        )

    def _maybe_purge(self, db: sqlite3.Connection, now: float) -> None:
        """Delete what expired, at most ``_BULK_MOST`` rows of each table in this
        write transaction (a submit's or an ack's): while more are left, the next write
        purges again."""
        if now - self._last_purge < _PURGE_EVERY_S:
            return
        most = _BULK_MOST
        deleted = [
            db.execute(
                "DELETE FROM tasks WHERE rowid IN (SELECT rowid FROM tasks "
                "WHERE expires_at IS NOT NULL AND expires_at < ? LIMIT ?)",
                (now, most),
            ).rowcount,
            db.execute(
                "DELETE FROM task_events WHERE (task_id, seq) IN (SELECT task_id, seq "
                "FROM task_events WHERE expires_at < ? LIMIT ?)",
                (now, most),
            ).rowcount,
            db.execute(
                "DELETE FROM task_waiters WHERE (task_id, address) IN (SELECT task_id, "
                "address FROM task_waiters WHERE expires_at < ? LIMIT ?)",
                (now, most),
            ).rowcount,
        ]
        self._last_purge = now if max(deleted) < most else now - _PURGE_EVERY_S

    # -- notices and wake-ups ------------------------------------------------------

    def _waiters_of(
        self, db: sqlite3.Connection, ended: Sequence[tuple[str, str, int, str]]
    ) -> list[tuple[str, bytes]]:
        """Take the waiters of tasks that ``ended`` as ``(id, status, attempts, outcome
        json)``; returns ``(address, notice)`` to send once the transaction committed."""
        out: list[tuple[str, bytes]] = []
        by_id = {task_id: (status, attempts, body) for task_id, status, attempts, body in ended}
        ids = list(by_id)
        for first in range(0, len(ids), 500):
            chunk = ids[first : first + 500]
            rows = db.execute(
                "DELETE FROM task_waiters WHERE task_id IN "  # noqa: S608 - placeholders only
                f"({', '.join('?' * len(chunk))}) RETURNING task_id, address",
                chunk,
            ).fetchall()
            for task_id, address in rows:
                status, attempts, body = by_id[task_id]
                notice = Notice(task_id, cast("TaskStatus", status), attempts, body)
                out.append((address, notice.encode()))
        return out

    def _send_notices(self, notices: Sequence[tuple[str, bytes]]) -> None:
        """Send each listener its notices, bundled (a batch's acks: one datagram)."""
        by_address: dict[str, list[bytes]] = {}
        for address, message in notices:
            by_address.setdefault(address, []).append(message)
        for address, messages in by_address.items():
            for datagram in bundles(messages):
                self._sender.send(address, datagram, wait=True)

    def _wake_workers(self) -> None:
        """Tell the workers waiting for tasks that some may be there (after a commit)."""
        now = time.monotonic()
        if now - self._wake_read_at >= _WAKE_REFRESH_S:
            self._wake_read_at = now
            own = None if self._wake is None else self._wake.address
            try:
                rows = self._read(
                    "SELECT address FROM wake_listeners WHERE updated_at > ?",
                    (time.time() - _WAKE_STALE_S,),
                )
            except BrokerError:
                rows = []
            self._wake_addresses = [a for (a,) in rows if a != own]
        for address in self._wake_addresses:
            self._sender.send(address, b"w")

    def _wake_channel(self) -> LocalChannel | None:
        """This worker's wake-up channel, listed in ``wake_listeners`` (renewed now and
        then); None when local sockets cannot be had (then waits poll)."""
        if self._wake is None:
            try:
                self._wake = LocalChannel("wake")
            except OSError:
                return None
        now = time.time()
        if now - self._wake_renewed >= _WAKE_RENEW_S:
            # a new row, or one producers had stopped reading: not everybody wakes us yet
            unknown = now - self._wake_renewed >= _WAKE_STALE_S - 2 * _WAKE_REFRESH_S
            self._wake_renewed = now
            try:
                with self._write() as db:
                    db.execute(
                        "INSERT OR REPLACE INTO wake_listeners (address, updated_at) VALUES (?, ?)",
                        (self._wake.address, now),
                    )
            except (sqlite3.Error, BrokerError):
                self._wake_renewed = 0.0
                self._wake_known_at = float("inf")
            else:
                if unknown:  # every producer re-reads the addresses within _WAKE_REFRESH_S
                    self._wake_known_at = time.monotonic() + _WAKE_REFRESH_S + 0.1
        return self._wake

    # -- results ---------------------------------------------------------------

    def result_notices(self) -> ResultNotices:
        """Binds this process's notice socket on first use (a thread reads it, or the
        event loop :meth:`listen_in` names)."""
        with self._lock:
            if self._listener is None:
                self._listener = ChannelListener(ResultNotices())
            return self._listener.notices

    def listen_in(self, loop: asyncio.AbstractEventLoop) -> None:
        """The notice socket is read by ``loop`` (call it from there), not by a thread."""
        self.result_notices()
        assert self._listener is not None
        self._listener.read_on(loop)

    def _listener_address(self) -> str:
        self.result_notices()
        assert self._listener is not None
        return self._listener.address

    def watch(self, task_ids: Sequence[str]) -> list[TaskStatus | None]:
        if not task_ids:
            return []
        address = self._listener_address()
        now = time.time()
        try:
            with self._write() as db:
                return self._watch_rows(db, list(task_ids), address, now)
        except sqlite3.Error as exc:
            raise self._error("watch tasks", exc) from exc

    def _watch_rows(
        self, db: sqlite3.Connection, task_ids: list[str], address: str, now: float
    ) -> list[TaskStatus | None]:
        out: list[TaskStatus | None] = []
        for task_id in task_ids:
            row = db.execute(
                "SELECT status FROM tasks WHERE id = ? AND (expires_at IS NULL OR expires_at >= ?)",
                (task_id, now),
            ).fetchone()
            out.append(None if row is None else cast("TaskStatus", row[0]))
        # only tasks still to end get a waiter: an ended one would never be told
        expires = now + self.options.result_ttl_s
        db.executemany(
            "INSERT OR IGNORE INTO task_waiters (task_id, address, expires_at) VALUES (?, ?, ?)",
            [
                (task_id, address, expires)
                for task_id, status in zip(task_ids, out, strict=True)
                if status is not None and status not in FINAL_STATUSES
            ],
        )
        return out

    # -- submit ----------------------------------------------------------------

    def submit_many(self, specs: Sequence[TaskSpec], *, watch: bool = False) -> list[Submitted]:
        now = time.time()
        address = self._listener_address() if watch else None
        created = [
            TaskRecord(
                id=new_id(),
                capability=s.capability,
                payload=s.payload,
                status="pending",
                priority=s.priority,
                max_attempts=s.max_attempts,
                idempotency_key=s.idempotency_key,
                created_at=now,
                updated_at=now,
                timeout_s=s.timeout_s,
                meta=s.meta,
            )
            for s in specs
        ]
        rows = [
            (
                r.id,
                r.capability,
                json.dumps(r.payload, separators=(",", ":")),
                r.priority,
                r.max_attempts,
                r.idempotency_key,
                now,
                now,
                now,
                r.timeout_s,
                json.dumps(r.meta, separators=(",", ":")) if r.meta else None,
                _caller(r.meta),
            )
            for r in created
        ]
        records: list[Submitted] = list(created)
        keyed = [i for i, s in enumerate(specs) if s.idempotency_key is not None]
        expected: list[str] = []
        try:
            with self._write() as db:
                self._maybe_purge(db, now)
                if keyed:  # a key whose task expired is free again
                    db.executemany(
                        "DELETE FROM tasks WHERE idempotency_key = ? AND expires_at < ?",
                        [(specs[i].idempotency_key, now) for i in keyed],
                    )
                db.executemany(
                    "INSERT INTO tasks (id, capability, payload, status, priority, max_attempts, "
                    "idempotency_key, created_at, updated_at, visible_at, timeout_s, meta, caller) "
                    "VALUES (?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (idempotency_key) DO NOTHING",
                    rows,
                )
                for i in keyed:
                    row = db.execute(
                        f"SELECT {_COLUMNS} FROM tasks WHERE idempotency_key = ?",  # noqa: S608 - constants and placeholders only
                        (specs[i].idempotency_key,),
                    ).fetchone()
                    if row is not None and row[0] != rows[i][0]:
                        records[i] = _existing(row, specs[i])
                if address is not None:
                    # in the transaction: no task can end before its waiter is listed
                    expected = [r.id for r in records if isinstance(r, TaskRecord)]
                    self.result_notices().expect(expected)
                    self._watch_rows(db, expected, address, now)
        except sqlite3.Error as exc:
            for task_id in expected:
                self.result_notices().forget(task_id)
            raise self._error("submit tasks", exc) from exc
        self._wake_workers()
        return records

    # -- claim -----------------------------------------------------------------

    def ack_and_claim(
        self, items: Sequence[tuple[Claim, Any]], options: ClaimOptions
    ) -> list[Claim]:
        """Ack ``items`` and claim the next batch in one transaction."""
        deadline = time.monotonic() + options.block_s
        wake = self._wake_channel() if options.block_s > 0 else None
        while True:
            version = self._data_version()
            if wake is not None:
                wake.drain()  # before the claim: a wake-up after it is kept for the wait
            claims = self._claim_now(options, items)
            items = []
            if claims or time.monotonic() >= deadline:
                return claims
            self._wait_for_change(version, deadline, wake)

    def _data_version(self) -> int:
        with self._lock:
            return int(self._db.execute("PRAGMA data_version").fetchone()[0])

    def _wait_for_change(self, version: int, deadline: float, wake: LocalChannel | None) -> None:
        """Wait for a wake-up, another connection's commit, or a lease/retry coming due.

        Producers send a wake-up after each submit; ``PRAGMA data_version``
        (it changes when any other connection commits, and reading it takes no lock)
        is the fallback, looked at every ``_WAKE_FALLBACK_S`` while a producer may
        not have this worker's address yet (for ``_WAKE_REFRESH_S`` after it is
        listed anew; without a wake channel: every 0.2 to 2 ms); a claim runs every
        ``_RESCAN_S`` anyway for leases and retry backoffs that ran out. Once every
        producer wakes it, the wait only looks at the wake channel until the rescan:
        an idle worker reads the database 20 times a second, not 100.
        """
        pause = 0.0002
        rescan_at = time.monotonic() + _RESCAN_S
        while True:
            now = time.monotonic()
            if now >= deadline or now >= rescan_at:
                return
            if wake is not None:
                fallback = _WAKE_FALLBACK_S if now < self._wake_known_at else _RESCAN_S
                if wake.receive(min(fallback, deadline - now, rescan_at - now)):
                    return
            else:
                time.sleep(min(pause, deadline - now))
                pause = min(pause * 1.5, 0.002)
            try:
                if self._data_version() != version:
                    return
            except sqlite3.Error:
                return

    def _claim_now(
        self, options: ClaimOptions, acks: Sequence[tuple[Claim, Any]] = ()
    ) -> list[Claim]:
        caps, limit = options.capabilities, options.limit
        if caps is not None and not caps:
            if acks:
                self.ack_many(acks)
            return []
        now = time.time()
        receipt = new_id()
        where = "" if caps is None else f" AND capability IN ({', '.join('?' * len(caps))})"
        # Tasks whose lease ran out (their worker died or hung) go first: they are
        # the oldest work; then the backlog, higher priority first.
        expired_sql = _TAKE.format(
            rows="SELECT rowid FROM tasks WHERE status = 'running' AND visible_at <= ?"  # noqa: S608 - constants and placeholders only
            f"{where} ORDER BY visible_at LIMIT ?"
        )
        if not acks and not self._claimable(now, caps, where):
            return []
        head: list[Any] = [options.consumer, receipt, now + options.visibility_timeout_s, now, now]
        notices: list[tuple[str, bytes]] = []
        # (capability, status) of each task this claim ends, for Broker.ended_by_claims
        ended: list[tuple[str, str]] = []
        try:
            with self._write() as db:
                if acks:
                    notices = self._ack_rows(db, acks, now)
                rows = db.execute(expired_sql, [*head, *(caps or ()), limit]).fetchall()
                if len(rows) < limit:
                    db.execute(_QUEUE_DUE_RETRIES, (now, _QUEUE_RETRIES_MOST))
                    ready = self._claim_ready(db, head[:4], caps, now, limit - len(rows))
                    # RETURNING comes in no particular order
                    rows += sorted(ready, key=lambda r: (-r[4], r[8]))
                lost: list[tuple[str, str, int, str]] = []
                for row in rows:
                    if row[14] is not None:  # cancelled, and its worker let the lease run out
                        error = json.dumps(cancelled_error(CANCELLED_WORKER_GONE))
                        expires = now + self.options.result_ttl_s
                        db.execute(_END_CANCELLED, (error, row[5] - 1, now, expires, row[0]))
                        lost.append((row[0], "cancelled", row[5] - 1, error))
                        ended.append((row[1], "cancelled"))
                    elif row[5] > row[6]:  # delivered more than max_attempts times
                        error = json.dumps(worker_lost_error(row[5] - 1))
                        db.execute(
                            "UPDATE tasks SET status = 'dead', error = ?, attempts = ?, "
                            "consumer = NULL, receipt = NULL, updated_at = ? WHERE id = ?",
                            (error, row[5] - 1, now, row[0]),
                        )
                        lost.append((row[0], "dead", row[5] - 1, error))
                        ended.append((row[1], "dead"))
                if lost:
                    notices += self._waiters_of(db, lost)
        except sqlite3.Error as exc:
            raise self._error("claim tasks", exc) from exc
        for capability, status in ended:  # committed: for the claiming worker to count
            self._ended.add(capability, status)
        self._send_notices(notices)
        return [
            Claim(task=_record(r), receipt=receipt, attempt=r[5])
            for r in rows
            if r[5] <= r[6] and r[14] is None
        ]

    def ended_by_claims(self) -> list[tuple[str, str]]:
        return self._ended.drain()

    def _claim_ready(
        self,
        db: sqlite3.Connection,
        head: Sequence[Any],
        caps: Sequence[str] | None,
        now: float,
        limit: int,
    ) -> list[Any]:
        """Claim up to ``limit`` ready tasks of ``caps`` (None: of any capability) in
        ``db``'s transaction; ``head``: consumer, receipt, visible_at, updated_at."""
        if caps is None:
            caps = [c for (c,) in db.execute(_READY_CAPABILITIES)]
            if not caps:
                return []
        if len(caps) > _UNION_MOST:  # one scan of the capabilities' entries, sorted
            marks = ", ".join("?" * len(caps))
            sql = _TAKE.format(
                rows="SELECT rowid FROM tasks WHERE status IN ('pending', 'retrying') "  # noqa: S608 - constants and placeholders only
                f"AND backing_off IS NULL AND visible_at <= ? AND capability IN ({marks}) "
                "ORDER BY priority DESC, visible_at LIMIT ?"
            )
            return db.execute(sql, [*head, now, *caps, limit]).fetchall()
        params = [*head, *(v for c in caps for v in (c, now, limit)), limit]
        return db.execute(_claim_ready_sql(len(caps)), params).fetchall()

    def _claimable(self, now: float, caps: Sequence[str] | None, where: str) -> bool:
        """Whether a claim could take anything now: a read, which takes no lock.

        Every submit wakes every waiting worker, and each claims; all but one find
        nothing, yet each took the write lock to learn it, and a writer that finds
        the lock taken sleeps at least a millisecond (SQLite's busy handler): the
        submit or ack it delayed was on some request's path. Idle workers' rescans
        (every ``_RESCAN_S``) took it too. A task that becomes claimable after this
        read wakes the worker again (its wake-up is kept: the channel was drained
        before). A retry of any capability whose backoff ran out counts: the claim
        moves it to the queued tasks (:data:`_QUEUE_DUE_RETRIES`) whoever it is for.
        """
        sql = (
            "SELECT EXISTS (SELECT 1 FROM tasks WHERE status = 'running' "  # noqa: S608 - constants and placeholders only
            f"AND visible_at <= ?{where}) OR EXISTS (SELECT 1 FROM tasks "
            "WHERE status IN ('pending', 'retrying') AND backing_off IS NULL "
            f"AND visible_at <= ?{where}) OR EXISTS (SELECT 1 FROM tasks "
            "WHERE status IN ('pending', 'retrying') AND backing_off IS NOT NULL "
            "AND visible_at <= ?)"
        )
        try:
            rows = self._read(sql, [now, *(caps or ()), now, *(caps or ()), now])
        except BrokerError:
            return True  # the claim will say what is wrong
        return bool(rows[0][0])

    # -- finish ----------------------------------------------------------------

    def ack_many(self, items: Sequence[tuple[Claim, Any]]) -> None:
        if not items:
            return
        now = time.time()
        try:
            with self._write() as db:
                notices = self._ack_rows(db, items, now)
                self._maybe_purge(db, now)
        except sqlite3.Error as exc:
            raise self._error("ack tasks", exc) from exc
        self._send_notices(notices)

    def _ack_rows(
        self, db: sqlite3.Connection, items: Sequence[tuple[Claim, Any]], now: float
    ) -> list[tuple[str, bytes]]:
        """Store the results; returns the notices to send after the commit."""
        expires = now + self.options.result_ttl_s
        bodies = [json.dumps(result) for _, result in items]
        db.executemany(
            "UPDATE tasks SET status = 'succeeded', result = ?, error = NULL, "
            "updated_at = ?, expires_at = ?, consumer = NULL, receipt = NULL "
            "WHERE id = ? AND status IN ('pending', 'retrying', 'running')",
            [
                (body, now, expires, claim.task.id)
                for (claim, _), body in zip(items, bodies, strict=True)
            ],
        )
        ended = [
            (claim.task.id, "succeeded", claim.attempt, body)
            for (claim, _), body in zip(items, bodies, strict=True)
        ]
        return self._waiters_of(db, ended)

    def fail(
        self,
        claim: Claim,
        error: Mapping[str, Any],
        *,
        retryable: bool,
        client_fault: bool = False,
    ) -> TaskStatus:
        now = time.time()
        body = json.dumps(dict(error))
        notices: list[tuple[str, bytes]] = []
        try:
            with self._write() as db:
                row = db.execute(
                    "SELECT status, attempts, max_attempts, receipt, cancel_requested "
                    "FROM tasks WHERE id = ?",
                    (claim.task.id,),
                ).fetchone()
                if row is None:
                    return "dead"
                status, attempts, max_attempts, receipt, cancel_requested = row
                if status != "running" or receipt != claim.receipt:
                    return cast("TaskStatus", status)
                ended: TaskStatus = "dead"
                if cancel_requested is not None:
                    ended = "cancelled"
                    body = json.dumps(cancelled_error(CANCELLED_WHILE_IT_RAN, dict(error)))
                    expires = now + self.options.result_ttl_s
                    db.execute(_END_CANCELLED, (body, attempts, now, expires, claim.task.id))
                elif client_fault:
                    ended = "failed"
                    db.execute(
                        "UPDATE tasks SET status = 'failed', error = ?, updated_at = ?, "
                        "expires_at = ?, consumer = NULL, receipt = NULL WHERE id = ?",
                        (body, now, now + self.options.result_ttl_s, claim.task.id),
                    )
                elif retryable and attempts < max_attempts:
                    due = now + self.options.retry.delay_s(attempts)
                    db.execute(
                        "UPDATE tasks SET status = 'retrying', error = ?, visible_at = ?, "
                        "updated_at = ?, consumer = NULL, receipt = NULL, backing_off = 1 "
                        "WHERE id = ?",
                        (body, due, now, claim.task.id),
                    )
                    return "retrying"
                else:
                    db.execute(
                        "UPDATE tasks SET status = 'dead', error = ?, updated_at = ?, "
                        "consumer = NULL, receipt = NULL WHERE id = ?",
                        (body, now, claim.task.id),
                    )
                notices = self._waiters_of(db, [(claim.task.id, ended, attempts, body)])
        except sqlite3.Error as exc:
            raise self._error("record a failure", exc) from exc
        self._send_notices(notices)
        return ended

    def extend_many(self, claims: Sequence[Claim], visibility_timeout_s: float) -> list[bool]:
        if not claims:
            return []
        until = time.time() + visibility_timeout_s
        out: list[bool] = []
        try:
            with self._write() as db:
                for claim in claims:
                    cur = db.execute(
                        "UPDATE tasks SET visible_at = ? "
                        "WHERE id = ? AND receipt = ? AND status = 'running'",
                        (until, claim.task.id, claim.receipt),
                    )
                    out.append(cur.rowcount == 1)
        except sqlite3.Error as exc:
            raise self._error("extend claims", exc) from exc
        return out

    def release(self, claims: Sequence[Claim]) -> None:
        if not claims:
            return
        now = time.time()
        error = json.dumps(cancelled_error(CANCELLED_BEFORE_IT_RAN))
        try:
            with self._write() as db:
                ended = [
                    row
                    for claim in claims
                    for row in db.execute(
                        f"UPDATE tasks SET {_PENDING_UNLESS_CANCELLED}, "  # noqa: S608 - a constant
                        "attempts = MAX(0, attempts - 1) "
                        "WHERE id = ? AND receipt = ? AND status = 'running' "
                        "RETURNING id, status, attempts, error",
                        (error, now + self.options.result_ttl_s, now, claim.task.id, claim.receipt),
                    )
                ]
                notices = self._waiters_of(db, [r for r in ended if r[1] == "cancelled"])
        except sqlite3.Error as exc:
            raise self._error("release claims", exc) from exc
        self._send_notices(notices)
        self._wake_workers()

    def recover(self, consumer: str) -> int:
        now = time.time()
        error = json.dumps(cancelled_error(CANCELLED_WORKER_GONE))
        try:
            with self._write() as db:
                ended = db.execute(
                    f"UPDATE tasks SET {_PENDING_UNLESS_CANCELLED} "  # noqa: S608 - a constant
                    "WHERE consumer = ? AND status = 'running' "
                    "RETURNING id, status, attempts, error",
                    (error, now + self.options.result_ttl_s, now, consumer),
                ).fetchall()
                notices = self._waiters_of(db, [r for r in ended if r[1] == "cancelled"])
        except sqlite3.Error as exc:
            raise self._error("recover tasks", exc) from exc
        self._send_notices(notices)
        if ended:
            self._wake_workers()
        return len(ended)

    # -- cancelling ------------------------------------------------------------

    def cancel(self, task_id: str) -> Cancellation | None:
        now = time.time()
        notices: list[tuple[str, bytes]] = []
        address: str | None = None
        try:
            with self._write() as db:
                row = db.execute(
                    "SELECT status, consumer, error FROM tasks "
                    "WHERE id = ? AND (expires_at IS NULL OR expires_at >= ?)",
                    (task_id, now),
                ).fetchone()
                if row is None:
                    return None
                status, consumer, error = row
                if status in ("pending", "retrying"):
                    cause = json.loads(error) if status == "retrying" and error else None
                    body = json.dumps(cancelled_error(CANCELLED_BEFORE_IT_RAN, cause))
                    ended = db.execute(
                        "UPDATE tasks SET status = 'cancelled', error = ?, updated_at = ?, "
                        "expires_at = ?, cancel_requested = ?, consumer = NULL, receipt = NULL "
                        "WHERE id = ? RETURNING id, status, attempts, error",
                        (body, now, now + self.options.result_ttl_s, now, task_id),
                    ).fetchall()
                    notices = self._waiters_of(db, ended)
                elif status == "running":
                    db.execute(
                        "UPDATE tasks SET cancel_requested = COALESCE(cancel_requested, ?) "
                        "WHERE id = ?",
                        (now, task_id),
                    )
                    found = db.execute(
                        "SELECT address FROM cancel_listeners WHERE consumer = ?", (consumer,)
                    ).fetchone()
                    address = None if found is None else found[0]
                record = _record(
                    db.execute(
                        f"SELECT {_COLUMNS} FROM tasks WHERE id = ?",  # noqa: S608 - a constant
                        (task_id,),
                    ).fetchone()
                )
        except sqlite3.Error as exc:
            raise self._error("cancel a task", exc) from exc
        self._send_notices(notices)
        if address is not None:
            self._sender.send(address, task_id.encode())
        outcome = {"pending": "cancelled", "retrying": "cancelled", "running": "stopping"}
        return Cancellation(outcome.get(status, "finished"), record)  # type: ignore[arg-type]

    def cancel_requested(self, task_ids: Sequence[str]) -> set[str]:
        found: set[str] = set()
        ids = list(task_ids)
        for first in range(0, len(ids), 500):
            chunk = ids[first : first + 500]
            found.update(
                task_id
                for (task_id,) in self._read(
                    "SELECT id FROM tasks WHERE cancel_requested IS NOT NULL "  # noqa: S608 - placeholders only
                    f"AND id IN ({', '.join('?' * len(chunk))})",
                    chunk,
                )
            )
        return found

    def listen_for_cancels(
        self, consumer: str, on_cancel: Callable[[str], None]
    ) -> Callable[[], None]:
        """A local socket listed in ``cancel_listeners`` under ``consumer``; without one
        (no local sockets here) the heartbeat's :meth:`cancel_requested` is all there is."""

        def tell(messages: list[bytes]) -> None:
            for message in messages:
                on_cancel(message.decode("ascii", "replace"))

        try:
            reader = ChannelThread("cancel", tell)
        except OSError:
            return lambda: None
        try:
            with self._write() as db:
                db.execute(
                    "INSERT OR REPLACE INTO cancel_listeners (consumer, address, updated_at) "
                    "VALUES (?, ?, ?)",
                    (consumer, reader.address, time.time()),
                )
        except BaseException:
            reader.close()
            raise

        def stop() -> None:
            with contextlib.suppress(sqlite3.Error, BrokerError), self._write() as db:
                db.execute(
                    "DELETE FROM cancel_listeners WHERE consumer = ? AND address = ?",
                    (consumer, reader.address),
                )
            reader.close()

        return stop

    # -- dead letters ----------------------------------------------------------

    def redrive(self, task_id: str) -> DeadLetterChange | None:
        return self._change_dead_letter(task_id, _REDRIVE, "redrive a dead letter")

    def redrive_dead_letters(self, capability: str) -> int:
        return self._change_dead_letters(capability, _REDRIVE, "redrive dead letters")

    def purge_dead_letter(self, task_id: str) -> DeadLetterChange | None:
        return self._change_dead_letter(task_id, _PURGE, "purge a dead letter")

    def purge_dead_letters(self, capability: str) -> int:
        return self._change_dead_letters(capability, _PURGE, "purge dead letters")

    def _change_dead_letter(self, task_id: str, change: str, what: str) -> DeadLetterChange | None:
        """Apply ``change`` (:data:`_REDRIVE`, :data:`_PURGE`) to one task if it is dead."""
        now = time.time()
        try:
            with self._write() as db:
                row = db.execute(
                    f"SELECT {_COLUMNS} FROM tasks WHERE id = ? "  # noqa: S608 - a constant
                    "AND (expires_at IS NULL OR expires_at >= ?)",
                    (task_id, now),
                ).fetchone()
                if row is None:
                    return None
                before = _record(row)
                if before.status != "dead":
                    return DeadLetterChange(False, before)
                _apply(db, change, "t.id = ?", (task_id,), now)
                after = db.execute(
                    f"SELECT {_COLUMNS} FROM tasks WHERE id = ?",  # noqa: S608 - a constant
                    (task_id,),
                ).fetchone()
        except sqlite3.Error as exc:
            raise self._error(what, exc) from exc
        if change == _REDRIVE:
            self._wake_workers()
        return DeadLetterChange(True, before if after is None else _record(after))

    def _change_dead_letters(self, capability: str, change: str, what: str) -> int:
        """Apply ``change`` to the dead letters of ``capability`` as of the call (one
        redriven that dies again meanwhile is not taken twice), at most
        ``_BULK_MOST`` per write transaction, with a pause between them for other
        writers: all at once, 100,000 held the write lock 0.9 s."""
        started, total = time.time(), 0
        while True:
            (rows,) = self._read_aside(
                (
                    "SELECT id FROM tasks WHERE status = 'dead' AND updated_at <= ? "
                    "AND capability = ? LIMIT ?",
                    (started, capability, _BULK_MOST),
                )
            )
            if rows:
                ids = json.dumps([task_id for (task_id,) in rows])
                try:
                    with self._write() as db:
                        picked = "t.id IN (SELECT value FROM json_each(?))"
                        total += _apply(db, change, picked, (ids,), time.time())
                except sqlite3.Error as exc:
                    raise self._error(what, exc) from exc
            if len(rows) < _BULK_MOST:
                break
            time.sleep(2 * _TURN_PAUSE_MAX_S)  # a writer waiting for its turn gets it
        if total and change == _REDRIVE:
            self._wake_workers()
        return total

    # -- streaming events ------------------------------------------------------

    def publish_events(self, task_id: str, events: Sequence[Mapping[str, Any]]) -> None:
        if not events:
            return
        bodies = [json.dumps(dict(event), separators=(",", ":")) for event in events]
        expires = time.time() + self.options.result_ttl_s
        try:
            with self._write() as db:
                (last,) = db.execute(
                    "SELECT COALESCE(MAX(seq), 0) FROM task_events WHERE task_id = ?", (task_id,)
                ).fetchone()
                db.executemany(
                    "INSERT INTO task_events (task_id, seq, event, expires_at) VALUES (?, ?, ?, ?)",
                    [(task_id, int(last) + i, body, expires) for i, body in enumerate(bodies, 1)],
                )
                waiters = db.execute(
                    "SELECT address FROM task_waiters WHERE task_id = ?", (task_id,)
                ).fetchall()
        except sqlite3.Error as exc:
            raise self._error("publish events", exc) from exc
        notice = Notice(task_id, "event", int(last) + len(bodies)).encode()
        self._send_notices([(address, notice) for (address,) in waiters])

    def read_events(
        self, task_id: str, after: int, *, block_s: float = 0.0, limit: int = 100
    ) -> list[tuple[int, Mapping[str, Any]]]:
        """Poll with short sleeps that grow from 1 ms to 20 ms while nothing comes."""
        deadline = time.monotonic() + block_s
        pause = 0.001
        while True:
            rows = self._read(
                "SELECT seq, event FROM task_events WHERE task_id = ? AND seq > ? "
                "AND expires_at >= ? ORDER BY seq LIMIT ?",
                (task_id, int(after), time.time(), max(1, int(limit))),
            )
            if rows:
                return [(int(seq), json.loads(body)) for seq, body in rows]
            left = deadline - time.monotonic()
            if left <= 0:
                return []
            time.sleep(min(pause, left))
            pause = min(pause * 2, _EVENT_POLL_MAX_S)

    # -- inspect ---------------------------------------------------------------

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        try:
            with self._lock:
                return self._db.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise self._error("read the queue", exc) from exc

    def _read_aside(self, *queries: str | tuple[str, Sequence[Any]]) -> list[list[Any]]:
        """``queries`` (SQL, or SQL and its parameters) read in one snapshot on the
        reading connection.

        Counting a deep queue takes a while (the stats of 200,000 ready tasks: tens of
        milliseconds), and so does a list that few tasks match (a filter no index
        serves: 23-34 ms with 200,000 queued); on the main connection they held the lock
        every thread of this process writes through, so a server's submits waited."""
        with self._aside_lock:
            try:
                db = self._aside_db
                if db is None:
                    db = sqlite3.connect(
                        str(self.path), isolation_level=None, check_same_thread=False
                    )
                    db.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_s * 1000)}")
                    db.execute("PRAGMA query_only = ON")
                    self._aside_db = db
                db.execute("BEGIN")
                try:
                    return [
                        db.execute(*((q,) if isinstance(q, str) else q)).fetchall() for q in queries
                    ]
                finally:
                    db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise self._error("read the queue", exc) from exc

    def get(self, task_id: str) -> TaskRecord | None:
        rows = self._read(
            f"SELECT {_COLUMNS} FROM tasks "  # noqa: S608 - constants and placeholders only
            "WHERE id = ? AND (expires_at IS NULL OR expires_at >= ?)",
            (task_id, time.time()),
        )
        return _record(rows[0]) if rows else None

    def stats(self) -> QueueStats:
        now = time.time()
        pending: dict[str, int] = {}
        later: dict[str, int] = {}
        by_band: dict[str, dict[int, int]] = {}
        # each query reads one partial index: together they cover every queued task
        # (a retry whose backoff is over waits in the second until a claim moves it).
        # A queued task is ready since its visible_at (its submission, a redrive, or the
        # end of its retry's backoff), which both indexes hold: the oldest ready task is
        # read in the same pass as the counts, not from the table's rows.
        queued, backing_off, counts = self._read_aside(
            "SELECT capability, priority, COUNT(*), 0, MIN(visible_at) FROM tasks "
            "WHERE status IN ('pending', 'retrying') AND backing_off IS NULL "
            "GROUP BY capability, priority",
            (
                "SELECT capability, priority, COUNT(*), SUM(visible_at > ?), MIN(visible_at) "
                "FROM tasks WHERE status IN ('pending', 'retrying') AND backing_off IS NOT NULL "
                "GROUP BY capability, priority",
                (now,),
            ),
            "SELECT "
            "(SELECT COUNT(*) FROM tasks WHERE status = 'running'), "
            "(SELECT COUNT(*) FROM tasks WHERE status = 'dead')",
        )
        oldest: float | None = None
        for cap, priority, n, not_due, since in (*queued, *backing_off):
            pending[cap] = pending.get(cap, 0) + int(n)
            if not_due:
                later[cap] = later.get(cap, 0) + int(not_due)
            bands = by_band.setdefault(cap, {})
            band = priority_band(int(priority))
            bands[band] = bands.get(band, 0) + int(n)
            if since <= now:  # (of the retries backing off, only one already due)
                oldest = since if oldest is None else min(oldest, since)
        (running, dead), *_ = counts
        age = 0.0 if oldest is None else max(0.0, now - oldest)
        return QueueStats(
            pending=pending,
            running=int(running),
            dead=int(dead),
            oldest_pending_age_s=age,
            pending_by_priority=by_band,
            backing_off=later,
        )

    def dead_letters(self, limit: int = 100) -> list[TaskRecord]:
        (rows,) = self._read_aside(
            (
                f"SELECT {_COLUMNS} FROM tasks WHERE status = 'dead' "  # noqa: S608 - constants and placeholders only
                "ORDER BY updated_at DESC LIMIT ?",
                (limit,),
            )
        )
        return [_record(r) for r in rows]

    def list_tasks(self, query: TaskQuery) -> TaskPage:
        """Newest first by rowid (the order of the inserts, and the cursor)."""
        where = ["(expires_at IS NULL OR expires_at >= ?)"]
        params: list[Any] = [time.time()]
        for column, value in (
            ("rowid <", query.before),
            ("status =", query.status),
            ("capability =", query.capability),
            ("caller =", query.caller),
        ):
            if value is not None:
                where.append(f"{column} ?")
                params.append(value)
        (rows,) = self._read_aside(
            (
                f"SELECT {_SUMMARY_COLUMNS} FROM tasks WHERE {' AND '.join(where)} "  # noqa: S608 - constants and placeholders only
                "ORDER BY rowid DESC LIMIT ?",
                (*params, query.limit + 1),
            )
        )
        page = rows[: query.limit]
        more = len(rows) > query.limit
        return TaskPage(tuple(map(_summary, page)), str(page[-1][0]) if more else None)

    def ping(self) -> bool:
        try:
            self._read("SELECT 1")
        except BrokerError:
            return False
        return True

    def _checkpoint_loop(self) -> None:
        """Copy committed WAL frames into the database now and then, off the commit path,
        while this broker holds the database's checkpoint lock (see the module docstring)."""
        try:
            lock = os.open(f"{self.path}-checkpoint", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:
            return  # an unwritable folder: the queue still works; SQLite checkpoints on close
        self._checkpoint_file = lock
        try:
            while True:  # a checkpointer per database: wait for the one that has it to go
                if self._closed.wait(_CHECKPOINT_EVERY_S):
                    return
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError:
                    continue
            self._checkpoints_now = True
            self._checkpoint_while_open()
        finally:
            self._checkpoints_now = False
            self._checkpoint_file = None
            os.close(lock)  # a separate file: SQLite's own locks on the database stay

    def _checkpoint_while_open(self) -> None:
        try:
            db = sqlite3.connect(str(self.path), isolation_level=None, timeout=0)
        except sqlite3.Error:
            return
        checkpointed_at: int | None = None  # data_version of the last complete checkpoint
        try:
            while not self._closed.wait(_CHECKPOINT_EVERY_S):
                try:
                    version = db.execute("PRAGMA data_version").fetchone()[0]
                    if version == checkpointed_at:
                        continue  # nothing committed since: a checkpoint would find nothing
                    busy, frames, copied = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    if not busy and frames == copied:
                        checkpointed_at = version
                except sqlite3.Error:
                    continue  # the file is busy: next time
        finally:
            db.close()

    def close(self) -> None:
        self._closed.set()
        self._checkpointer.join(timeout=5)
        if self._listener is not None:
            self._listener.close()
        if self._wake is not None:
            with contextlib.suppress(sqlite3.Error, BrokerError), self._write() as db:
                db.execute("DELETE FROM wake_listeners WHERE address = ?", (self._wake.address,))
            self._wake.close()
        self._sender.close()
        with self._aside_lock:
            if self._aside_db is not None:
                self._aside_db.close()
                self._aside_db = None
        with self._writers, self._lock:
            self._db.close()
            if self._turn is not None:
                os.close(self._turn)
                self._turn = None
