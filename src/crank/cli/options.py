"""Option parsing shared by several commands."""

from __future__ import annotations

import datetime as dt
import os

from crank.errors import UsageError


def parse_today(value: str | None) -> dt.date | None:
    """``--today YYYY-MM-DD`` (sunset checks); None when not given."""
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise UsageError(
            f"--today {value!r} is not a date", hint="write it as YYYY-MM-DD", subject=value
        ) from None


def report_format(value: str | None) -> str:
    """The ``--format`` given, else ``github`` inside GitHub Actions, else ``text``."""
    if value is not None:
        return value
    return "github" if os.environ.get("GITHUB_ACTIONS", "").lower() == "true" else "text"
