"""Render a :class:`~crank.routing.compat.CompatReport` as text, JSON or GitHub annotations."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from crank.annotations import ReportFormat, github_annotation

if TYPE_CHECKING:
    from crank.routing.compat import CompatFinding, CompatReport


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def summary_line(report: CompatReport) -> str:
    old = f"{report.old.name} {report.old.version}"
    new = f"{report.new.name} {report.new.version}"
    warn = f", {_plural(len(report.warnings), 'warning')}" if report.warnings else ""
    if report.ok:
        return f"compatible: no breaking changes from {old} to {new}{warn}"
    rules = ", ".join(report.rules())
    return f"{_plural(len(report.breaking), 'breaking change')} ({rules}) from {old} to {new}{warn}"


def _changes_lines(report: CompatReport) -> list[str]:
    c = report.changes
    lines: list[str] = []
    if c.get("added"):
        lines.append(f"added: {', '.join(c['added'])}")
    for s in c.get("split", []):
        lines.append(f"split: {s['from']} -> {', '.join(s['to'])}")
    for r in c.get("renamed", []):
        lines.append(f"renamed: {r['from']} -> {r['to']}")
    for m in c.get("merged", []):
        lines.append(f"merged: {', '.join(m['from'])} -> {m['to']}")
    for d in c.get("deprecated", []):
        lines.append(f"deprecated: {d['id']} (sunset {d['sunset']})")
    if c.get("removed"):
        lines.append(f"removed: {', '.join(c['removed'])}")
    for ch in c.get("changed", []):
        mark = " (breaking)" if ch["breaking"] else ""
        lines.append(f"changed: {ch['id']} {ch['old_version']} -> {ch['new_version']}{mark}")
    return lines


def format_text(report: CompatReport) -> str:
    lines = [f.finding.format_text() for f in (*report.breaking, *report.warnings)]
    lines += _changes_lines(report)
    lines.append(summary_line(report))
    return "\n".join(lines) + "\n"


def format_json(report: CompatReport) -> str:
    return json.dumps(report.as_dict(), indent=2) + "\n"


def github_line(item: CompatFinding) -> str:
    f = item.finding
    message = f"{f.message} [{f.json_path}]"
    if f.hint:
        message += f"\nhint: {f.hint}"
    return github_annotation(f.severity, message, file=f.file, line=f.line, col=f.col, title=f.rule)


def format_github(report: CompatReport) -> str:
    lines = [github_line(f) for f in (*report.breaking, *report.warnings)]
    lines.append(summary_line(report))
    return "\n".join(lines) + "\n"


def render(report: CompatReport, output_format: ReportFormat) -> str:
    if output_format == "json":
        return format_json(report)
    if output_format == "github":
        return format_github(report)
    return format_text(report)
