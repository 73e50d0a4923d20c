"""The SQLite files crank shares between processes (the queue, LLM usage) are in WAL mode.

SQLite answers ``database is locked`` at once, without waiting out its busy timeout, to
a connection that asks for WAL while another one is making the file or switching it:
of several processes opening a new file together (worker processes started at once
beside one another), all but one failed to start. Such a refusal is tried again.
"""

from __future__ import annotations

import sqlite3

WAL = "PRAGMA journal_mode = WAL"


def use_wal(db: sqlite3.Connection, *, timeout_s: float = 30.0) -> None:
    """Put the file of ``db`` in WAL mode (the file keeps it), trying again for up to
    ``timeout_s`` while another connection holds the lock it needs; any other error,
    or a lock held longer, is raised as SQLite said it."""
    try:
        db.execute(WAL)
        return
    except sqlite3.OperationalError as exc:
        if not _locked(exc):
            raise
    # the first try is a plain call: tenacity is imported only for a file being made
    from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_random

    retrying = Retrying(
        retry=retry_if_exception(_locked),
        stop=stop_after_delay(timeout_s),
        wait=wait_random(0.005, 0.05),
        reraise=True,
    )
    retrying(db.execute, WAL)


def _locked(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and exc.sqlite_errorname in (
        "SQLITE_BUSY",
        "SQLITE_LOCKED",
    )
