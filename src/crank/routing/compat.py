"""``crank compat``: manifest changes that strand clients, each with a stable rule id.

:func:`compare_manifests` is the API (the migration-checklist generator consumes
:meth:`CompatReport.as_dict`); ``crank compat`` only renders its report. Each rule
is one function over a :class:`CompatContext`, listed in :data:`RULES` like the
lint rules; :func:`summarize_changes` says what changed, breaking or not.

Rules (a major version bump of a capability turns its CMP004/CMP005/CMP008 findings
into warnings: the contract says it changed):

=======  ==================================================================
CMP001   capability removed without a ``deprecated`` entry
CMP002   deprecated entry (or one of its legacy routes) removed before its
         sunset
CMP003   deprecated capability cannot be routed: shim target missing, split
         without a shim, shim default or selector values not covered, a call
         it routed before its sunset now refused or sent elsewhere
CMP004   input narrowed: new required field, type narrowed, enum value
         removed, value constraint tightened, additionalProperties tightened
         (also through a shim)
CMP005   output broken: required field removed, type changed, enum value
         added, value constraint loosened, streaming turned on or off
CMP006   breaking change without a major version bump, or a major version
         lowered
CMP007   sunset moved earlier, or a grace period shorter than the minimum
CMP008   failures tightened: timeout_s shortened, a declared error code
         removed; max_attempts lowered or a code no longer retryable (warnings)
=======  ==================================================================
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from crank.routing.compat_report import CompatFinding, CompatReport, ManifestSummary
from crank.routing.compat_rules import DEFAULT_MIN_GRACE_DAYS, RULES, CompatContext, CompatRule

if TYPE_CHECKING:
    from crank.manifest import LoadedDocument, Manifest


def summarize_changes(ctx: CompatContext) -> dict[str, list[Any]]:
    """What changed, breaking or not: ids added, removed, split, renamed, merged,
    newly deprecated, and capabilities whose version or schemas changed."""
    changes: dict[str, list[Any]] = {
        "added": sorted(set(ctx.new_caps) - set(ctx.old_caps)),
        "removed": [],
        "split": [],
        "renamed": [],
        "merged": [],
        "deprecated": [],
        "changed": [],
    }
    merge_groups: dict[str, list[str]] = {}
    for cap_id in sorted(set(ctx.old_caps) - set(ctx.new_caps)):
        changes["removed"].append(cap_id)
        if cap_id not in ctx.new_deps:
            continue
        dep = ctx.new_deps[cap_id][1]
        if len(dep.replaced_by) > 1:
            changes["split"].append({"from": cap_id, "to": list(dep.replaced_by)})
        else:
            merge_groups.setdefault(dep.replaced_by[0], []).append(cap_id)
    for target, sources in sorted(merge_groups.items()):
        if len(sources) > 1:
            changes["merged"].append({"from": sorted(sources), "to": target})
        else:
            changes["renamed"].append({"from": sources[0], "to": target})
    changes["removed"] += [
        dep_id for dep_id in set(ctx.old_deps) - set(ctx.new_deps) if dep_id not in ctx.new_caps
    ]
    changes["removed"].sort()
    for dep_id, (_, dep) in sorted(ctx.new_deps.items()):
        if dep_id not in ctx.old_deps:
            changes["deprecated"].append(
                {
                    "id": dep_id,
                    "replaced_by": list(dep.replaced_by),
                    "sunset": dep.sunset.isoformat(),
                    "deprecated_since": dep.deprecated_since.isoformat()
                    if dep.deprecated_since
                    else None,
                    "select_by": dep.shim.select_by if dep.shim else None,
                    "legacy_routes": list(dep.legacy_routes),
                }
            )
    for contract in ctx.kept.values():
        old, new = contract.old, contract.new
        if (
            old.version != new.version
            or old.input != new.input
            or old.output != new.output
            or contract.failures_changed
            or contract.streaming_changed
        ):
            changes["changed"].append(
                {
                    "id": new.id,
                    "old_version": old.version,
                    "new_version": new.version,
                    "breaking": contract.breaking,
                }
            )
    return changes


def compare_manifests(
    old: Manifest,
    new: Manifest,
    *,
    today: dt.date | None = None,
    min_grace_days: int = DEFAULT_MIN_GRACE_DAYS,
    old_document: LoadedDocument | None = None,
    new_document: LoadedDocument | None = None,
    old_label: str | None = None,
    new_label: str | None = None,
) -> CompatReport:
    """Compare ``old`` with ``new`` under every rule; the documents (optional) give
    findings line:col."""
    labels = (old_label or str(old.path or "<old>"), new_label or str(new.path or "<new>"))
    ctx = CompatContext(
        old,
        new,
        today or dt.date.today(),
        min_grace_days,
        old_document,
        new_document,
        labels,
    )
    found = [finding for rule in RULES for finding in rule.check(ctx)]

    def order(f: CompatFinding) -> tuple[str, str, str]:
        return (f.rule, f.capability, f.finding.json_path)

    return CompatReport(
        old=ManifestSummary.of(old, labels[0]),
        new=ManifestSummary.of(new, labels[1]),
        today=ctx.today,
        min_grace_days=min_grace_days,
        breaking=tuple(sorted((f for f in found if f.finding.severity == "error"), key=order)),
        warnings=tuple(sorted((f for f in found if f.finding.severity == "warning"), key=order)),
        changes=summarize_changes(ctx),
    )


__all__ = [
    "DEFAULT_MIN_GRACE_DAYS",
    "RULES",
    "CompatContext",
    "CompatFinding",
    "CompatReport",
    "CompatRule",
    "ManifestSummary",
    "compare_manifests",
    "summarize_changes",
]
