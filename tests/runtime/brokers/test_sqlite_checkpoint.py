"""The SQLite broker checkpoints its WAL in the background, not inside a commit, from
one process per queue file."""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import subprocess
import sys
import time
from typing import TYPE_CHECKING

from crank.runtime.brokers.contract import ClaimOptions, TaskSpec
from crank.runtime.brokers.sqlite import SqliteBroker

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path


def _rows_in_database_file(path: Path) -> int:
    """Tasks in the main database file alone (``immutable`` reads ignore the WAL).

    An ``immutable`` read takes no lock: while a checkpoint writes the file, it can read
    a page from before and one from after ("database disk image is malformed"). That
    is this reader's doing, not the file's: it counts as nothing checkpointed yet, and
    :func:`_intact` checks the file itself with a proper connection."""
    db = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
    try:
        return int(db.execute("SELECT count(*) FROM tasks").fetchone()[0])
    except sqlite3.DatabaseError:  # no schema checkpointed yet, or a torn read
        return 0
    finally:
        db.close()


def _intact(path: Path) -> int:
    """The task count of a queue file that SQLite finds intact (with its WAL)."""
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return int(db.execute("SELECT count(*) FROM tasks").fetchone()[0])
    finally:
        db.close()


def test_commits_leave_the_checkpoint_to_the_background_thread(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    broker = SqliteBroker(path)
    try:
        assert broker._db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
        broker.submit_many([TaskSpec("demo.echo", {"n": i}) for i in range(2000)])
        deadline = time.monotonic() + 60
        while _rows_in_database_file(path) < 2000 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _rows_in_database_file(path) == 2000
    finally:
        broker.close()
    assert not broker._checkpointer.is_alive()


def test_the_queue_stays_consistent_across_checkpoints(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    broker = SqliteBroker(path)
    other = SqliteBroker(path)  # a second process's view: its own checkpointer too
    try:
        ids = [r.id for r in broker.submit_many([TaskSpec("demo.echo", {}) for _ in range(500)])]
        taken = 0
        while taken < 500:
            claims = other.claim(ClaimOptions("w", limit=50))
            other.ack_many([(c, {"ok": True}) for c in claims])
            taken += len(claims)
            time.sleep(0.01)  # let checkpoints run in between
        records = [broker.get(i) for i in ids]
        assert all(r is not None and r.status == "succeeded" for r in records)
    finally:
        other.close()
        broker.close()


def _checkpoint_lock_held(path: Path) -> bool:
    """Does some broker hold the queue's checkpoint lock (a probe of our own says)?"""
    fd = os.open(f"{path}-checkpoint", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def _wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 60
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def test_one_broker_per_file_checkpoints_and_another_takes_over(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    first = SqliteBroker(path)
    second = SqliteBroker(path)  # waits for the lock: two checkpointers could race
    try:
        _wait_for(lambda: _checkpoint_lock_held(path), "nobody took the checkpoint lock")
        holder, waiter = (first, second) if first._checkpoints_now else (second, first)  # type: ignore[attr-defined]
        assert holder._checkpoints_now and not waiter._checkpoints_now  # type: ignore[attr-defined]
        holder.close()
        # the lock is let go with its holder; the other broker checkpoints from now on
        _wait_for(lambda: waiter._checkpoints_now, "the other broker did not take over")  # type: ignore[attr-defined]
        waiter.submit_many([TaskSpec("demo.echo", {"n": i}) for i in range(2000)])
        _wait_for(lambda: _rows_in_database_file(path) == 2000, "the WAL was not checkpointed")
    finally:
        first.close()
        second.close()
    assert not _checkpoint_lock_held(path)  # both closed: nobody holds it
    assert _intact(path) == 2000


#: a program that opens the queue, checkpoints, forks, and closes its broker; its child
#: then commits 2,000 tasks and prints how many reached the database file within 60 s.
_FORKED = """
import json, os, sqlite3, sys, time, warnings
warnings.simplefilter("ignore", DeprecationWarning)  # fork() with the checkpointer running
from crank.runtime.brokers.contract import TaskSpec
from crank.runtime.brokers.sqlite import SqliteBroker

def rows_in_file():
    db = sqlite3.connect(f"file:{sys.argv[1]}?immutable=1", uri=True)
    try:
        return db.execute("SELECT count(*) FROM tasks").fetchone()[0]
    except sqlite3.DatabaseError:
        return 0
    finally:
        db.close()

broker = SqliteBroker(sys.argv[1])
broker.submit_many([TaskSpec("demo.echo", {"n": -1})])
deadline = time.monotonic() + 60
while not broker._checkpoints_now:
    assert time.monotonic() < deadline, "the only broker did not take the checkpoint lock"
    time.sleep(0.02)
read_end, write_end = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(write_end)
    os.read(read_end, 1)  # the parent's broker is closed
    broker.submit_many([TaskSpec("demo.echo", {"n": i}) for i in range(2000)])
    deadline = time.monotonic() + 60
    while rows_in_file() < 2001 and time.monotonic() < deadline:
        time.sleep(0.02)
    print(json.dumps({"in_file": rows_in_file()}), flush=True)
    broker.close()
    os._exit(0)
os.close(read_end)
broker.close()
os.write(write_end, b"x")
os.waitpid(pid, 0)
"""


def test_a_forked_child_checkpoints_once_its_parent_closed(tmp_path: Path) -> None:
    """The child inherited the open lock file of its parent's checkpointer (an flock
    lasts while any copy is open) but not the thread: once the parent closed, nobody
    checkpointed, and no other process could take the lock while the child lived."""
    path = tmp_path / "q.db"
    out = subprocess.run(
        [sys.executable, "-c", _FORKED, str(path)],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"in_file": 2001}
    assert not _checkpoint_lock_held(path)
    assert _intact(path) == 2001
