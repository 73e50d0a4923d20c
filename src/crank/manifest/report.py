"""Lint results as text, JSON or GitHub Actions workflow commands.

All three formats carry the same findings; only the presentation differs.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from crank.annotations import ReportFormat, github_annotation

if TYPE_CHECKING:
    from crank.manifest.findings import Finding
    from crank.manifest.lint import LintResult


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def summary_line(result: LintResult) -> str:
    files = _plural(len(result.files), "file")
    errors, warnings, infos = (result.count(s) for s in ("error", "warning", "info"))
    if not errors and not warnings and not infos:
        return f"{files} checked, no problems found"
    parts = [_plural(errors, "error"), _plural(warnings, "warning")]
    if infos:
        parts.append(_plural(infos, "note"))
    return f"{', '.join(parts)} in {files}"


def format_text(result: LintResult) -> str:
    lines = [f.format_text() for f in result.findings]
    lines.append(summary_line(result))
    return "\n".join(lines) + "\n"


def format_json(result: LintResult) -> str:
    payload = {
        "files": list(result.files),
        "findings": [f.as_dict() for f in result.findings],
        "summary": {
            "files": len(result.files),
            "errors": result.count("error"),
            "warnings": result.count("warning"),
            "notes": result.count("info"),
        },
    }
    return json.dumps(payload, indent=2) + "\n"


def github_line(f: Finding) -> str:
    """``::error file=F,line=L,col=C,title=CRKxxx::message [$.path]`` (hint on a new line)."""
    message = f"{f.message} [{f.json_path}]"
    if f.hint:
        message += f"\nhint: {f.hint}"
    return github_annotation(f.severity, message, file=f.file, line=f.line, col=f.col, title=f.rule)


def format_github(result: LintResult) -> str:
    lines = [github_line(f) for f in result.findings]
    lines.append(summary_line(result))
    return "\n".join(lines) + "\n"


def render(result: LintResult, output_format: ReportFormat) -> str:
    if output_format == "json":
        return format_json(result)
    if output_format == "github":
        return format_github(result)
    return format_text(result)
