"""The grouped "what to install" summary printed at the end of a pytest run.

Each skipped or failed report that a crank dependency caused carries a plain
``crank_dependency`` dict (it survives pytest-xdist's report serialisation), so
the summary is built from reports wherever the terminal lives.
"""

from __future__ import annotations

from typing import Any

_ORDER = {"skipped": 0, "required": 1, "broken": 2}


class DependencySummary:
    """Counts distinct tests per (outcome, dependency, hint)."""

    def __init__(self) -> None:
        self._tests: dict[tuple[str, str, str | None], set[str]] = {}

    def record(self, nodeid: str, info: dict[str, Any]) -> None:
        key = (str(info["outcome"]), str(info["name"]), info.get("hint"))
        self._tests.setdefault(key, set()).add(nodeid)

    def lines(self) -> list[str]:
        ordered = sorted(
            self._tests.items(),
            # every part of the key: xdist delivers reports in no fixed order
            key=lambda item: (
                _ORDER.get(item[0][0], 9),
                -len(item[1]),
                item[0][1],
                item[0][2] or "",
            ),
        )
        return [
            format_line(outcome, name, hint, len(nodes)) for (outcome, name, hint), nodes in ordered
        ]


def format_line(outcome: str, name: str, hint: str | None, count: int) -> str:
    """``crank: 12 tests skipped - missing pandoc (apt-get install pandoc)``."""
    tests = f"{count} test{'s' if count != 1 else ''}"
    if outcome == "skipped":
        text = f"crank: {tests} skipped - missing {name}"
    elif outcome == "required":
        text = f"crank: {tests} failed - required {name} is missing"
    else:
        text = f"crank: {tests} failed - {name} is installed but broken"
    return f"{text} ({hint})" if hint else text
