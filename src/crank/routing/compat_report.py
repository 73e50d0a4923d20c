"""What ``crank compat`` reports: the :class:`CompatReport` and its findings, and
how it is rendered (text, JSON or GitHub annotations)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from crank.annotations import ReportFormat, github_annotation

if TYPE_CHECKING:
    import datetime as dt

    from crank.manifest import Manifest
    from crank.manifest.findings import Finding

Side = Literal["old", "new"]


@dataclass(frozen=True)
class CompatFinding:
    """One incompatible change: a positioned :class:`Finding` plus the capability it concerns."""

    finding: Finding
    capability: str
    side: Side

    @property
    def rule(self) -> str:
        return self.finding.rule

    def as_dict(self) -> dict[str, Any]:
        return {**self.finding.as_dict(), "capability": self.capability, "side": self.side}


@dataclass(frozen=True)
class ManifestSummary:
    name: str
    version: str
    path: str | None
    digest: str

    @classmethod
    def of(cls, manifest: Manifest, label: str | None = None) -> ManifestSummary:
        path = label or (str(manifest.path) if manifest.path else None)
        return cls(manifest.name, manifest.metadata.version, path, manifest.digest())

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "path": self.path,
            "digest": self.digest,
        }


@dataclass(frozen=True)
class CompatReport:
    """What changed between two manifests and which changes strand clients.

    ``as_dict()`` is a stable structure::

        {"old": {name, version, path, digest}, "new": {...}, "ok": bool,
         "min_grace_days": int, "today": "YYYY-MM-DD",
         "breaking": [finding...], "warnings": [finding...],
         "changes": {"added": [id], "removed": [id],
                     "split": [{"from": id, "to": [id]}],
                     "renamed": [{"from": id, "to": id}],
                     "merged": [{"from": [id], "to": id}],
                     "deprecated": [{"id", "replaced_by", "sunset", "deprecated_since",
                                     "select_by", "legacy_routes"}],
                     "changed": [{"id", "old_version", "new_version", "breaking"}]}}

    where a finding is ``{file, line, col, rule, severity, message, json_path, hint,
    capability, side}``.
    """

    old: ManifestSummary
    new: ManifestSummary
    today: dt.date
    min_grace_days: int
    breaking: tuple[CompatFinding, ...] = ()
    warnings: tuple[CompatFinding, ...] = ()
    changes: dict[str, list[Any]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.breaking

    def rules(self) -> list[str]:
        return sorted({f.rule for f in self.breaking})

    def as_dict(self) -> dict[str, Any]:
        return {
            "old": self.old.as_dict(),
            "new": self.new.as_dict(),
            "ok": self.ok,
            "today": self.today.isoformat(),
            "min_grace_days": self.min_grace_days,
            "breaking": [f.as_dict() for f in self.breaking],
            "warnings": [f.as_dict() for f in self.warnings],
            "changes": self.changes,
        }


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
