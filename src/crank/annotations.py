"""GitHub Actions workflow commands (``::error file=...::message``) for every report.

``crank lint``, ``crank compat`` and ``crank check`` print findings as annotations
with ``--format github``; the escaping rules of the format live here only.
"""

from __future__ import annotations

from typing import Literal

#: The formats of every findings report (``--format``): text, JSON, or annotations.
ReportFormat = Literal["text", "json", "github"]

Level = Literal["error", "warning", "notice"]
_LEVELS: dict[str, Level] = {
    "error": "error",
    "warning": "warning",
    "info": "notice",
    "notice": "notice",
}


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def github_annotation(
    severity: str,
    message: str,
    *,
    file: str | None = None,
    line: int | None = None,
    col: int | None = None,
    title: str | None = None,
) -> str:
    """One workflow command line; ``severity`` ``info`` becomes a ``notice``."""
    props = ",".join(
        f"{key}={_escape_property(str(value))}"
        for key, value in (("file", file), ("line", line), ("col", col), ("title", title))
        if value is not None
    )
    level = _LEVELS.get(severity, "error")
    head = f"{level} {props}" if props else level
    return f"::{head}::{_escape_data(message)}"
