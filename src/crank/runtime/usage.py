"""LLM usage tracking: tokens and cost per capability, model and day, and the daily budget.

Worker processes record each call with ``ctx.record_usage(...)``
(:mod:`crank.runtime.task_services`); the totals go to a small SQLite file
(``CRANK_USAGE_DB``, set by the supervisor for its children) so the supervisor
can add up every process, and to Prometheus counters. The supervisor compares
today's total with the daily budget (:func:`budget_state`): a warning at 80 %,
and at 100 % the capabilities whose manifest says ``essential: false`` are
paused (HTTP 503) until the next UTC day.
"""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from crank.errors import UsageError
from crank.runtime.sqlite_wal import use_wal

if TYPE_CHECKING:
    from collections.abc import Iterable

USAGE_DB_ENV = "CRANK_USAGE_DB"
BudgetLevel = Literal["ok", "warning", "exhausted", "unlimited"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS llm_usage (
    day TEXT NOT NULL,
    capability TEXT NOT NULL,
    model TEXT NOT NULL,
    calls INTEGER NOT NULL DEFAULT 0,
    input_tokens INTEGER NOT NULL DEFAULT 0,
    output_tokens INTEGER NOT NULL DEFAULT 0,
    cost_usd REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (day, capability, model)
)
"""


@dataclass(frozen=True)
class UsageRow:
    day: str
    capability: str
    model: str
    calls: int
    input_tokens: int
    output_tokens: int
    cost_usd: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "day": self.day,
            "capability": self.capability,
            "model": self.model,
            "calls": self.calls,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost_usd": round(self.cost_usd, 6),
        }


def utc_day(now: dt.datetime | None = None) -> str:
    return (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).date().isoformat()


class UsageStore:
    """Per-day totals in one SQLite file, safe to share between processes (WAL)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)  # as the queue file's
            self._conn = sqlite3.connect(self.path, timeout=30.0, check_same_thread=False)
            use_wal(self._conn)
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute(_SCHEMA)
            self._conn.commit()
        except (sqlite3.Error, OSError) as exc:
            raise UsageError(
                f"cannot open the LLM usage file {self.path}: {exc}",
                hint="set CRANK_USAGE_DB to a SQLite file in a writable folder, or unset it "
                "(crank-usage.db in the current folder)",
                subject="CRANK_USAGE_DB",
            ) from exc

    def record(
        self,
        capability: str,
        model: str,
        input_tokens: int,
        output_tokens: int,
        cost_usd: float,
        *,
        day: str | None = None,
    ) -> None:
        with self._lock:
            self._conn.execute(
                "INSERT INTO llm_usage (day, capability, model, calls, input_tokens, output_tokens,"
                " cost_usd) VALUES (?, ?, ?, 1, ?, ?, ?)"
                " ON CONFLICT (day, capability, model) DO UPDATE SET calls = calls + 1,"
                " input_tokens = input_tokens + excluded.input_tokens,"
                " output_tokens = output_tokens + excluded.output_tokens,"
                " cost_usd = cost_usd + excluded.cost_usd",
                (day or utc_day(), capability, model, input_tokens, output_tokens, cost_usd),
            )
            self._conn.commit()

    def rows(self, day: str | None = None) -> list[UsageRow]:
        query = (
            "SELECT day, capability, model, calls, input_tokens, output_tokens, cost_usd"
            " FROM llm_usage"
        )
        args: tuple[str, ...] = ()
        if day is not None:
            query += " WHERE day = ?"
            args = (day,)
        with self._lock:
            fetched = self._conn.execute(
                query + " ORDER BY day, capability, model", args
            ).fetchall()
        return [UsageRow(*row) for row in fetched]

    def cost_for_day(self, day: str | None = None) -> float:
        with self._lock:
            row = self._conn.execute(
                "SELECT COALESCE(SUM(cost_usd), 0) FROM llm_usage WHERE day = ?",
                (day or utc_day(),),
            ).fetchone()
        return float(row[0])

    def close(self) -> None:
        with self._lock:
            self._conn.close()


_stores: dict[Path, UsageStore] = {}
_stores_lock = threading.Lock()


def store_from_env() -> UsageStore | None:
    """The process-wide store named by ``CRANK_USAGE_DB``, or None when unset."""
    raw = os.environ.get(USAGE_DB_ENV)
    if not raw:
        return None
    path = Path(raw)
    with _stores_lock:
        store = _stores.get(path)
        if store is None:
            store = _stores[path] = UsageStore(path)
        return store


@dataclass(frozen=True)
class BudgetState:
    level: BudgetLevel
    spent_usd: float
    budget_usd: float | None

    @property
    def ratio(self) -> float:
        return self.spent_usd / self.budget_usd if self.budget_usd else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "spent_usd": round(self.spent_usd, 6),
            "budget_usd": self.budget_usd,
            "used_percentage": round(100.0 * self.ratio, 1),
        }


def budget_state(
    spent_usd: float, budget_usd: float | None, warn_ratio: float = 0.8
) -> BudgetState:
    """ok below ``warn_ratio``, warning from it, exhausted at 100 % (pure)."""
    if budget_usd is None:
        return BudgetState("unlimited", spent_usd, None)
    ratio = spent_usd / budget_usd
    level: BudgetLevel = "exhausted" if ratio >= 1.0 else "warning" if ratio >= warn_ratio else "ok"
    return BudgetState(level, spent_usd, budget_usd)


def paused_capabilities(state: BudgetState, non_essential: Iterable[str]) -> tuple[str, ...]:
    """The capabilities to refuse while the budget is exhausted."""
    return tuple(sorted(non_essential)) if state.level == "exhausted" else ()


__all__ = [
    "USAGE_DB_ENV",
    "BudgetState",
    "UsageRow",
    "UsageStore",
    "budget_state",
    "paused_capabilities",
    "store_from_env",
    "utc_day",
]
