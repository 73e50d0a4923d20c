"""A new SQLite file opened by several processes at once: every one of them starts.

SQLite refuses a switch to WAL at once ("database is locked", no busy wait) while
another connection writes to a file still in its first journal mode: of the worker
processes that opened a new queue or usage file together, all but one could fail.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from typing import TYPE_CHECKING, Any

import pytest

from crank.runtime.sqlite_wal import use_wal

if TYPE_CHECKING:
    from pathlib import Path


class Asking(sqlite3.Connection):
    """A connection that counts its WAL requests and calls ``then`` after the first."""

    wal_asked = 0
    then: Any = None

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        if "journal_mode" in sql:
            self.wal_asked += 1
            if self.wal_asked == 2 and self.then is not None:
                self.then()
        return super().execute(sql, *args)


def writing(path: Path) -> sqlite3.Connection:
    """A connection in the middle of making the file (a write transaction open)."""
    maker = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    maker.execute("BEGIN IMMEDIATE")
    maker.execute("CREATE TABLE made (x)")
    return maker


def test_wal_is_asked_for_again_while_another_process_makes_the_file(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    maker = writing(path)
    db = sqlite3.connect(path, isolation_level=None, factory=Asking)
    assert isinstance(db, Asking)
    with pytest.raises(sqlite3.OperationalError, match="database is locked"):
        db.execute("PRAGMA journal_mode = WAL")  # at once: no busy wait for this
    db.wal_asked = 0
    db.then = lambda: maker.execute("COMMIT")  # the maker is done after the first refusal
    use_wal(db)
    assert db.wal_asked == 2
    assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    db.close()
    maker.close()


def test_a_lock_held_past_the_timeout_is_raised(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    maker = writing(path)
    db = sqlite3.connect(path, isolation_level=None)
    with pytest.raises(sqlite3.OperationalError, match="database is locked"):
        use_wal(db, timeout_s=0.2)
    db.close()
    maker.close()


def test_a_file_that_is_no_database_is_not_tried_again(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_bytes(b"these are not the droids you are looking for\n" * 100)
    db = sqlite3.connect(path, isolation_level=None, factory=Asking)
    assert isinstance(db, Asking)
    with pytest.raises(sqlite3.DatabaseError, match="not a database"):
        use_wal(db)
    assert db.wal_asked == 1
    db.close()


OPEN = {
    "queue": "from crank.runtime.brokers import open_broker\n"
    "open_broker('sqlite:///' + sys.argv[1]).close()",
    "usage": "from crank.runtime.usage import UsageStore\nUsageStore(sys.argv[1]).close()",
}


@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(OPEN))
def test_processes_opening_a_new_file_together_all_start(kind: str, tmp_path: Path) -> None:
    """Six processes, each one imported and waiting (it says so on its stdout), are let
    go at once (a byte on each one's stdin) to open the same new file; twice."""
    imports, opens = OPEN[kind].split("\n")
    ready = "sys.stdout.write('r'); sys.stdout.flush(); sys.stdin.read(1)"
    code = f"import sys\n{imports}\n{ready}\n{opens}\n"
    for round_ in range(2):
        path = tmp_path / f"{kind}-{round_}.db"
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", code, str(path)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            for _ in range(6)
        ]
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.read(1) == b"r"
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write(b"x")
            proc.stdin.flush()
        errors = [proc.communicate(timeout=120)[1].decode() for proc in procs]
        failed = [err for proc, err in zip(procs, errors, strict=True) if proc.returncode]
        assert failed == []
