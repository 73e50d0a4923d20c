"""The embedded default broker: one SQLite file in WAL mode, safe across processes.

Every write runs in ``BEGIN IMMEDIATE`` (one writer at a time, others wait on
``busy_timeout``), and a claim is one ``UPDATE ... RETURNING`` over the best
``limit`` visible rows, so two processes can never claim the same task.
A running task's ``visible_at`` is its lease expiry: past it, the task is
visible again and the next claim redelivers it. ``synchronous=NORMAL`` keeps
every commit safe against a process crash (WAL), not against power loss.

Checkpoints (copying the WAL back into the database file, with an fsync) do
not run inside a commit, where SQLite's automatic checkpoint would put them:
there they added milliseconds to whichever submit, claim or ack crossed the
threshold (the round trip's p99). Each open broker has a thread that runs a
``PASSIVE`` checkpoint every ``_CHECKPOINT_EVERY_S`` on its own connection;
it never blocks readers or writers, and with several processes the WAL is
bounded as long as one of them is open.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from crank.errors import BrokerError
from crank.runtime.brokers.common import BrokerOptions, new_id, worker_lost_error
from crank.runtime.brokers.contract import (
    Broker,
    Claim,
    ClaimOptions,
    IdempotencyKeyReused,
    QueueStats,
    Submitted,
    TaskRecord,
    TaskSpec,
    TaskStatus,
    input_fingerprint,
)

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence

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
    expires_at REAL
);
CREATE INDEX IF NOT EXISTS tasks_ready ON tasks (priority DESC, visible_at)
    WHERE status IN ('pending', 'retrying');
CREATE INDEX IF NOT EXISTS tasks_leases ON tasks (visible_at) WHERE status = 'running';
CREATE INDEX IF NOT EXISTS tasks_consumer ON tasks (consumer) WHERE consumer IS NOT NULL;
CREATE INDEX IF NOT EXISTS tasks_dead ON tasks (updated_at) WHERE status = 'dead';
CREATE INDEX IF NOT EXISTS tasks_expiry ON tasks (expires_at) WHERE expires_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS task_events (
    task_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    event TEXT NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (task_id, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS task_events_expiry ON task_events (expires_at);
"""

_COLUMNS = (
    "id, capability, payload, status, priority, attempts, max_attempts, idempotency_key, "
    "created_at, updated_at, result, error, timeout_s, meta"
)
_PURGE_EVERY_S = 30.0
_RESCAN_S = 0.05
#: how often each open broker checkpoints the WAL (see the module docstring).
_CHECKPOINT_EVERY_S = 0.2
#: longest pause between two looks of a blocking ``read_events``.
_EVENT_POLL_MAX_S = 0.02


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
    )


def _existing(row: Sequence[Any], spec: TaskSpec) -> Submitted:
    """The task that owns ``spec``'s idempotency key, if it was made from the same request."""
    first = _record(row)
    same = input_fingerprint(first.capability, first.payload)
    if same != input_fingerprint(spec.capability, spec.payload):
        return IdempotencyKeyReused(str(spec.idempotency_key))
    return first


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
        self._last_purge = 0.0
        try:
            if self.path.parent and not self.path.parent.exists():
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                str(self.path), isolation_level=None, check_same_thread=False, timeout=30.0
            )
            self._db.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = NORMAL")
            self._db.execute("PRAGMA wal_autocheckpoint = 0")  # the checkpointer does it
            with self._write() as db:
                for statement in SCHEMA.split(";"):
                    if statement.strip():
                        db.execute(statement)
        except (sqlite3.Error, OSError) as exc:
            raise BrokerError(
                f"cannot open the SQLite queue {self.path}: {exc}",
                hint="check that the directory exists and is writable, and that the file "
                "is a crank queue (or remove it)",
                subject=str(self.path),
            ) from exc
        self._closed = threading.Event()
        self._checkpointer = threading.Thread(
            target=self._checkpoint_loop, name="crank-sqlite-checkpoint", daemon=True
        )
        self._checkpointer.start()

    # -- plumbing --------------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One IMMEDIATE transaction: takes the write lock first, so no upgrade deadlocks."""
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

    def _error(self, what: str, exc: sqlite3.Error) -> BrokerError:
        return BrokerError(
            f"SQLite queue {self.path}: cannot {what}: {exc}",
            hint="another process may hold the database locked for too long, or the disk is full",
            subject=str(self.path),
        )

    def _maybe_purge(self, db: sqlite3.Connection, now: float) -> None:
        if now - self._last_purge < _PURGE_EVERY_S:
            return
        self._last_purge = now
        db.execute("DELETE FROM tasks WHERE expires_at IS NOT NULL AND expires_at < ?", (now,))
        db.execute("DELETE FROM task_events WHERE expires_at < ?", (now,))

    # -- submit ----------------------------------------------------------------

    def submit_many(self, specs: Sequence[TaskSpec]) -> list[Submitted]:
        now = time.time()
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
            )
            for r in created
        ]
        records: list[Submitted] = list(created)
        keyed = [i for i, s in enumerate(specs) if s.idempotency_key is not None]
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
                    "idempotency_key, created_at, updated_at, visible_at, timeout_s, meta) "
                    "VALUES (?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?, ?) "
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
        except sqlite3.Error as exc:
            raise self._error("submit tasks", exc) from exc
        return records

    # -- claim -----------------------------------------------------------------

    def ack_and_claim(
        self, items: Sequence[tuple[Claim, Any]], options: ClaimOptions
    ) -> list[Claim]:
        """Ack ``items`` and claim the next batch in one transaction."""
        deadline = time.monotonic() + options.block_s
        while True:
            version = self._data_version()
            claims = self._claim_now(options, items)
            items = []
            if claims or time.monotonic() >= deadline:
                return claims
            self._wait_for_change(version, deadline)

    def _data_version(self) -> int:
        with self._lock:
            return int(self._db.execute("PRAGMA data_version").fetchone()[0])

    def _wait_for_change(self, version: int, deadline: float) -> None:
        """Sleep until another connection commits, or a lease/retry may have come due.

        ``PRAGMA data_version`` changes when any other connection commits, and
        reading it takes no lock, so idle workers poll it often (every 0.2 to 2 ms)
        and only run a claim (a write transaction) when something happened, or
        every ``_RESCAN_S`` for leases and retry backoffs that ran out.
        """
        pause = 0.0002
        rescan_at = time.monotonic() + _RESCAN_S
        while True:
            now = time.monotonic()
            if now >= deadline or now >= rescan_at:
                return
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
        take = (
            "UPDATE tasks SET status = 'running', attempts = attempts + 1, consumer = ?, "  # noqa: S608 - constants and placeholders only
            "receipt = ?, visible_at = ?, updated_at = ? WHERE rowid IN (SELECT rowid FROM tasks "
            "WHERE {state} AND visible_at <= ?{where} ORDER BY {order} LIMIT ?) "
            f"RETURNING {_COLUMNS}"
        )
        # Tasks whose lease ran out (their worker died or hung) go first: they are
        # the oldest work; then the backlog, higher priority first.
        expired_sql = take.format(state="status = 'running'", where=where, order="visible_at")
        ready_sql = take.format(
            state="status IN ('pending', 'retrying')",
            where=where,
            order="priority DESC, visible_at",
        )
        head: list[Any] = [options.consumer, receipt, now + options.visibility_timeout_s, now, now]
        try:
            with self._write() as db:
                if acks:
                    self._ack_rows(db, acks, now)
                rows = db.execute(expired_sql, [*head, *(caps or ()), limit]).fetchall()
                if len(rows) < limit:
                    more = [*head, *(caps or ()), limit - len(rows)]
                    ready = db.execute(ready_sql, more).fetchall()
                    # RETURNING comes in no particular order
                    rows += sorted(ready, key=lambda r: (-r[4], r[8]))
                for row in rows:
                    if row[5] > row[6]:  # delivered more than max_attempts times
                        db.execute(
                            "UPDATE tasks SET status = 'dead', error = ?, attempts = ?, "
                            "consumer = NULL, receipt = NULL, updated_at = ? WHERE id = ?",
                            (json.dumps(worker_lost_error(row[5] - 1)), row[5] - 1, now, row[0]),
                        )
        except sqlite3.Error as exc:
            raise self._error("claim tasks", exc) from exc
        return [Claim(task=_record(r), receipt=receipt, attempt=r[5]) for r in rows if r[5] <= r[6]]

    # -- finish ----------------------------------------------------------------

    def ack_many(self, items: Sequence[tuple[Claim, Any]]) -> None:
        if not items:
            return
        now = time.time()
        try:
            with self._write() as db:
                self._ack_rows(db, items, now)
                self._maybe_purge(db, now)
        except sqlite3.Error as exc:
            raise self._error("ack tasks", exc) from exc

    def _ack_rows(
        self, db: sqlite3.Connection, items: Sequence[tuple[Claim, Any]], now: float
    ) -> None:
        expires = now + self.options.result_ttl_s
        db.executemany(
            "UPDATE tasks SET status = 'succeeded', result = ?, error = NULL, "
            "updated_at = ?, expires_at = ?, consumer = NULL, receipt = NULL "
            "WHERE id = ? AND status IN ('pending', 'retrying', 'running')",
            [(json.dumps(result), now, expires, claim.task.id) for claim, result in items],
        )

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
        try:
            with self._write() as db:
                row = db.execute(
                    "SELECT status, attempts, max_attempts, receipt FROM tasks WHERE id = ?",
                    (claim.task.id,),
                ).fetchone()
                if row is None:
                    return "dead"
                status, attempts, max_attempts, receipt = row
                if status != "running" or receipt != claim.receipt:
                    return cast("TaskStatus", status)
                if client_fault:
                    db.execute(
                        "UPDATE tasks SET status = 'failed', error = ?, updated_at = ?, "
                        "expires_at = ?, consumer = NULL, receipt = NULL WHERE id = ?",
                        (body, now, now + self.options.result_ttl_s, claim.task.id),
                    )
                    return "failed"
                if retryable and attempts < max_attempts:
                    due = now + self.options.retry.delay_s(attempts)
                    db.execute(
                        "UPDATE tasks SET status = 'retrying', error = ?, visible_at = ?, "
                        "updated_at = ?, consumer = NULL, receipt = NULL WHERE id = ?",
                        (body, due, now, claim.task.id),
                    )
                    return "retrying"
                db.execute(
                    "UPDATE tasks SET status = 'dead', error = ?, updated_at = ?, "
                    "consumer = NULL, receipt = NULL WHERE id = ?",
                    (body, now, claim.task.id),
                )
                return "dead"
        except sqlite3.Error as exc:
            raise self._error("record a failure", exc) from exc

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
        try:
            with self._write() as db:
                db.executemany(
                    "UPDATE tasks SET status = 'pending', attempts = MAX(0, attempts - 1), "
                    "visible_at = created_at, updated_at = ?, consumer = NULL, receipt = NULL "
                    "WHERE id = ? AND receipt = ? AND status = 'running'",
                    [(now, c.task.id, c.receipt) for c in claims],
                )
        except sqlite3.Error as exc:
            raise self._error("release claims", exc) from exc

    def recover(self, consumer: str) -> int:
        try:
            with self._write() as db:
                cur = db.execute(
                    "UPDATE tasks SET status = 'pending', visible_at = created_at, "
                    "consumer = NULL, receipt = NULL WHERE consumer = ? AND status = 'running'",
                    (consumer,),
                )
                return int(cur.rowcount)
        except sqlite3.Error as exc:
            raise self._error("recover tasks", exc) from exc

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
        except sqlite3.Error as exc:
            raise self._error("publish events", exc) from exc

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

    def get(self, task_id: str) -> TaskRecord | None:
        rows = self._read(
            f"SELECT {_COLUMNS} FROM tasks "  # noqa: S608 - constants and placeholders only
            "WHERE id = ? AND (expires_at IS NULL OR expires_at >= ?)",
            (task_id, time.time()),
        )
        return _record(rows[0]) if rows else None

    def stats(self) -> QueueStats:
        now = time.time()
        pending = {
            cap: int(n)
            for cap, n in self._read(
                "SELECT capability, COUNT(*) FROM tasks "
                "WHERE status IN ('pending', 'retrying') GROUP BY capability"
            )
        }
        (running, dead, oldest), *_ = self._read(
            "SELECT "
            "(SELECT COUNT(*) FROM tasks WHERE status = 'running'), "
            "(SELECT COUNT(*) FROM tasks WHERE status = 'dead'), "
            "(SELECT MIN(created_at) FROM tasks WHERE status IN ('pending', 'retrying'))"
        )
        age = 0.0 if oldest is None else max(0.0, now - float(oldest))
        return QueueStats(
            pending=pending, running=int(running), dead=int(dead), oldest_pending_age_s=age
        )

    def dead_letters(self, limit: int = 100) -> list[TaskRecord]:
        rows = self._read(
            f"SELECT {_COLUMNS} FROM tasks WHERE status = 'dead' ORDER BY updated_at DESC LIMIT ?",  # noqa: S608 - constants and placeholders only
            (limit,),
        )
        return [_record(r) for r in rows]

    def ping(self) -> bool:
        try:
            self._read("SELECT 1")
        except BrokerError:
            return False
        return True

    def _checkpoint_loop(self) -> None:
        """Copy committed WAL frames into the database now and then, off the commit path."""
        try:
            db = sqlite3.connect(str(self.path), isolation_level=None, timeout=0)
        except sqlite3.Error:
            return  # the queue still works; SQLite only checkpoints on close then
        try:
            while not self._closed.wait(_CHECKPOINT_EVERY_S):
                try:
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error:
                    continue  # another process is checkpointing, or the file is busy
        finally:
            db.close()

    def close(self) -> None:
        self._closed.set()
        self._checkpointer.join(timeout=5)
        with self._lock:
            self._db.close()
