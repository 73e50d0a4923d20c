"""The grouped end-of-run summary: counts, order, wording."""

from __future__ import annotations

from crank.testing.summary import DependencySummary


def record_in(order: list[tuple[str, str | None]]) -> list[str]:
    summary = DependencySummary()
    for nodeid, hint in order:
        summary.record(nodeid, {"outcome": "skipped", "name": "pandoc", "hint": hint})
    return summary.lines()


def test_lines_do_not_depend_on_the_order_reports_arrive_in() -> None:
    """Under xdist the reports arrive in any order: two lines for one dependency (two
    hints) swapped places from one run to the next."""
    reports: list[tuple[str, str | None]] = [
        ("t.py::a", "apt-get install pandoc"),
        ("t.py::b", "brew install pandoc"),
    ]
    assert (
        record_in(reports)
        == record_in(reports[::-1])
        == [
            "crank: 1 test skipped - missing pandoc (apt-get install pandoc)",
            "crank: 1 test skipped - missing pandoc (brew install pandoc)",
        ]
    )
