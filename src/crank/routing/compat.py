"""``crank compat``: manifest changes that strand clients, each with a stable rule id.

:func:`compare_manifests` is the API (the migration-checklist generator consumes
:meth:`CompatReport.as_dict`); ``crank compat`` only renders its report.

Rules (a major version bump of a capability turns its CMP004/CMP005 findings into
warnings: the contract says it changed):

=======  ==================================================================
CMP001   capability removed without a ``deprecated`` entry
CMP002   deprecated entry removed before its sunset
CMP003   deprecated capability cannot be routed: shim target missing, split
         without a shim, shim default or selector values not covered
CMP004   input narrowed: new required field, type narrowed, enum value
         removed, additionalProperties tightened (also through a shim)
CMP005   output broken: required field removed, type changed, enum value added
CMP006   breaking change without a major version bump
CMP007   sunset moved earlier, or a grace period shorter than the minimum
=======  ==================================================================
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from crank.manifest.findings import Finding
from crank.routing.schema_diff import input_narrowings, output_breaks, without_field

if TYPE_CHECKING:
    from crank.manifest import Capability, Deprecation, LoadedDocument, Manifest
    from crank.routing.schema_diff import SchemaChange

RULES: dict[str, str] = {
    "CMP001": "capability removed without a deprecated entry",
    "CMP002": "deprecated entry removed before its sunset",
    "CMP003": "deprecated capability cannot be routed",
    "CMP004": "input narrowed",
    "CMP005": "output broken",
    "CMP006": "breaking change without a major version bump",
    "CMP007": "sunset moved earlier or grace period too short",
}
DEFAULT_MIN_GRACE_DAYS = 90
Side = Literal["old", "new"]
Path = tuple[str | int, ...]


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


class _Collector:
    """Builds positioned findings for one comparison."""

    def __init__(
        self,
        old: Manifest,
        new: Manifest,
        old_doc: LoadedDocument | None,
        new_doc: LoadedDocument | None,
        labels: tuple[str, str],
    ) -> None:
        self._docs = {"old": old_doc, "new": new_doc}
        self._files = labels
        self.breaking: list[CompatFinding] = []
        self.warnings: list[CompatFinding] = []

    def add(
        self,
        rule: str,
        capability: str,
        side: Side,
        path: Path,
        message: str,
        hint: str,
        *,
        warning: bool = False,
    ) -> None:
        doc = self._docs[side]
        line, col = doc.position(path) if doc is not None else (1, 1)
        file = self._files[0 if side == "old" else 1]
        severity: Literal["error", "warning"] = "warning" if warning else "error"
        finding = Finding(file, line, col, rule, message, severity, path, hint)
        (self.warnings if warning else self.breaking).append(
            CompatFinding(finding, capability, side)
        )


def _index_caps(manifest: Manifest) -> dict[str, tuple[int, Capability]]:
    return {c.id: (i, c) for i, c in enumerate(manifest.capabilities)}


def _index_deps(manifest: Manifest) -> dict[str, tuple[int, Deprecation]]:
    return {d.id: (i, d) for i, d in enumerate(manifest.deprecated)}


def _targets(dep: Deprecation) -> list[str]:
    found = list(dep.replaced_by)
    if dep.shim is not None:
        found += [t for t in dep.shim.map.values() if t not in found]
    return found


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
    """Compare ``old`` with ``new``; the documents (optional) give findings line:col."""
    today = today or dt.date.today()
    labels = (
        old_label or str(old.path or "<old>"),
        new_label or str(new.path or "<new>"),
    )
    out = _Collector(old, new, old_document, new_document, labels)
    old_caps, new_caps = _index_caps(old), _index_caps(new)
    old_deps, new_deps = _index_deps(old), _index_deps(new)
    routable = set(new_caps) | set(new_deps)

    changes: dict[str, list[Any]] = {
        "added": sorted(set(new_caps) - set(old_caps)),
        "removed": [],
        "split": [],
        "renamed": [],
        "merged": [],
        "deprecated": [],
        "changed": [],
    }

    # -- live capabilities that went away ---------------------------------------
    merge_groups: dict[str, list[str]] = {}
    for cap_id in sorted(set(old_caps) - set(new_caps)):
        index, cap = old_caps[cap_id]
        changes["removed"].append(cap_id)
        if cap_id not in new_deps:
            out.add(
                "CMP001",
                cap_id,
                "old",
                ("capabilities", index, "id"),
                f"capability {cap_id!r} ({cap.version}) was removed without a deprecated entry: "
                "clients calling it are stranded",
                f"keep it, or add a `deprecated:` entry for {cap_id} with replaced_by, a shim "
                f"if it was split, and a sunset at least {min_grace_days} days away",
            )
            continue
        dep = new_deps[cap_id][1]
        if len(dep.replaced_by) > 1:
            changes["split"].append({"from": cap_id, "to": list(dep.replaced_by)})
        else:
            merge_groups.setdefault(dep.replaced_by[0], []).append(cap_id)
    for target, sources in sorted(merge_groups.items()):
        if len(sources) > 1:
            changes["merged"].append({"from": sorted(sources), "to": target})
        else:
            changes["renamed"].append({"from": sources[0], "to": target})

    # -- deprecated entries that went away -------------------------------------
    for dep_id in sorted(set(old_deps) - set(new_deps)):
        index, dep = old_deps[dep_id]
        if dep_id in new_caps:
            continue  # un-deprecated: it is live again
        changes["removed"].append(dep_id)
        if today <= dep.sunset:
            out.add(
                "CMP002",
                dep_id,
                "old",
                ("deprecated", index, "id"),
                f"deprecated capability {dep_id!r} was removed before its sunset "
                f"({dep.sunset.isoformat()}): clients still calling it are stranded",
                f"keep the deprecated entry until {dep.sunset.isoformat()} has passed",
            )
    changes["removed"].sort()

    # -- deprecated entries of the new manifest -----------------------------------
    for dep_id, (index, dep) in sorted(new_deps.items()):
        base: Path = ("deprecated", index)
        if dep_id not in old_deps:
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
        _check_routing(out, dep, base, routable)
        _check_grace(out, dep, base, old_deps.get(dep_id), today, min_grace_days)
        if dep_id in old_caps:
            _check_through_shim(out, dep, base, old_caps[dep_id][1], new_caps)

    # -- capabilities in both -----------------------------------------------------
    for cap_id in sorted(set(old_caps) & set(new_caps)):
        _check_contract(out, old_caps[cap_id][1], *new_caps[cap_id], changes)

    order = sorted(out.breaking, key=lambda f: (f.rule, f.capability, f.finding.json_path))
    warn = sorted(out.warnings, key=lambda f: (f.rule, f.capability, f.finding.json_path))
    return CompatReport(
        old=ManifestSummary.of(old, labels[0]),
        new=ManifestSummary.of(new, labels[1]),
        today=today,
        min_grace_days=min_grace_days,
        breaking=tuple(order),
        warnings=tuple(warn),
        changes=changes,
    )


def _check_routing(out: _Collector, dep: Deprecation, base: Path, routable: set[str]) -> None:
    hint = "point replaced_by and shim.map at capabilities this manifest declares"
    for i, target in enumerate(dep.replaced_by):
        if target not in routable:
            out.add(
                "CMP003",
                dep.id,
                "new",
                (*base, "replaced_by", i),
                f"deprecated capability {dep.id!r} is replaced by {target!r}, "
                "which this manifest does not declare",
                hint,
            )
    shim = dep.shim
    if shim is None:
        if len(dep.replaced_by) > 1:
            out.add(
                "CMP003",
                dep.id,
                "new",
                (*base, "replaced_by"),
                f"deprecated capability {dep.id!r} is split into "
                f"{', '.join(dep.replaced_by)} without a shim: old calls cannot be routed",
                "add `shim: {select_by: <input field>, map: {<value>: <capability id>}, "
                "default: <value>}` to the deprecated entry",
            )
        return
    for key, target in shim.map.items():
        if target not in routable:
            out.add(
                "CMP003",
                dep.id,
                "new",
                (*base, "shim", "map", key),
                f"the shim of {dep.id!r} routes {shim.select_by}={key!r} to {target!r}, "
                "which this manifest does not declare",
                hint,
            )
    if shim.default is not None and shim.default not in shim.map:
        out.add(
            "CMP003",
            dep.id,
            "new",
            (*base, "shim", "default"),
            f"the shim default {shim.default!r} of {dep.id!r} is not a key of its map "
            f"({', '.join(shim.map)})",
            "make shim.default one of the shim.map keys",
        )


def _check_grace(
    out: _Collector,
    dep: Deprecation,
    base: Path,
    before: tuple[int, Deprecation] | None,
    today: dt.date,
    min_grace_days: int,
) -> None:
    if before is not None:
        old_sunset = before[1].sunset
        if dep.sunset < old_sunset:
            out.add(
                "CMP007",
                dep.id,
                "new",
                (*base, "sunset"),
                f"the sunset of {dep.id!r} moved earlier, from {old_sunset.isoformat()} to "
                f"{dep.sunset.isoformat()}: clients planned for the announced date",
                f"keep the sunset at {old_sunset.isoformat()} or later",
            )
            return
        if dep.sunset == old_sunset:
            return  # announced before: its grace period was checked then
    start = max(today, dep.deprecated_since) if dep.deprecated_since else today
    grace = (dep.sunset - start).days
    if grace < min_grace_days:
        since = "today" if start == today else f"deprecated_since {start.isoformat()}"
        out.add(
            "CMP007",
            dep.id,
            "new",
            (*base, "sunset"),
            f"{dep.id!r} gets {grace} days of grace ({since} to sunset "
            f"{dep.sunset.isoformat()}), fewer than the minimum {min_grace_days}",
            f"set the sunset on or after {(start + dt.timedelta(days=min_grace_days)).isoformat()}",
        )


def _check_through_shim(
    out: _Collector,
    dep: Deprecation,
    base: Path,
    old_cap: Capability,
    new_caps: dict[str, tuple[int, Capability]],
) -> None:
    """Old payloads of a capability now deprecated must still be accepted by each successor."""
    old_input: Any = old_cap.input
    shim = dep.shim
    if shim is not None:
        selector = old_input.get("properties", {}).get(shim.select_by) if old_input else None
        values = selector.get("enum") if isinstance(selector, dict) else None
        if isinstance(values, list):
            uncovered = [v for v in values if not (isinstance(v, str) and v in shim.map)]
            if uncovered:
                shown = ", ".join(repr(v) for v in uncovered)
                out.add(
                    "CMP003",
                    dep.id,
                    "new",
                    (*base, "shim", "map"),
                    f"the shim of {dep.id!r} does not route {shim.select_by}={shown}, which "
                    "old clients may send",
                    f"map every value of {shim.select_by} the old input allowed",
                )
        if shim.default is None and shim.select_by not in old_input.get("required", []):
            out.add(
                "CMP003",
                dep.id,
                "new",
                (*base, "shim"),
                f"old calls to {dep.id!r} may omit {shim.select_by!r}, and its shim has no default",
                f"add shim.default naming the successor for calls without {shim.select_by}",
            )
        if not shim.keep_selector:
            old_input = without_field(old_input, shim.select_by)
    for target in _targets(dep):
        if target not in new_caps:
            continue
        index, new_cap = new_caps[target]
        where: Path = ("capabilities", index)
        for change in input_narrowings(old_input, new_cap.input):
            out.add(
                "CMP004",
                dep.id,
                "new",
                (*where, "input", *change.schema_path),
                f"calls to deprecated {dep.id!r} routed to {target!r} break: input at "
                f"{change.path}: {change.detail}",
                f"make {target} accept every payload {dep.id} accepted (minus the selector)",
            )
        for change in output_breaks(old_cap.output, new_cap.output):
            out.add(
                "CMP005",
                dep.id,
                "new",
                (*where, "output", *change.schema_path),
                f"clients of deprecated {dep.id!r} routed to {target!r} get a different output: "
                f"{change.path}: {change.detail}",
                f"tell the clients of {dep.id} (the Deprecation header does) to move to {target}",
                warning=True,
            )


def _check_contract(
    out: _Collector,
    old_cap: Capability,
    index: int,
    new_cap: Capability,
    changes: dict[str, list[Any]],
) -> None:
    bumped = new_cap.major > old_cap.major
    where: Path = ("capabilities", index)
    narrowed: list[SchemaChange] = input_narrowings(old_cap.input, new_cap.input)
    broken: list[SchemaChange] = output_breaks(old_cap.output, new_cap.output)
    for change in narrowed:
        out.add(
            "CMP004",
            new_cap.id,
            "new",
            (*where, "input", *change.schema_path),
            f"input of {new_cap.id!r} narrowed at {change.path}: {change.detail}",
            "accept what the old schema accepted (make new fields optional, keep enum values), "
            "or add a new capability id and deprecate this one",
            warning=bumped,
        )
    for change in broken:
        out.add(
            "CMP005",
            new_cap.id,
            "new",
            (*where, "output", *change.schema_path),
            f"output of {new_cap.id!r} broken at {change.path}: {change.detail}",
            "keep returning what the old schema promised (add fields, do not remove or retype)",
            warning=bumped,
        )
    breaking = bool(narrowed or broken)
    if breaking and not bumped:
        out.add(
            "CMP006",
            new_cap.id,
            "new",
            (*where, "version"),
            f"{new_cap.id!r} changed incompatibly but its version went {old_cap.version} -> "
            f"{new_cap.version} without a major bump",
            f"bump the version to {old_cap.major + 1}.0.0, or better keep {new_cap.id} "
            "compatible and add the new contract under a new id",
        )
    same_schemas = old_cap.input == new_cap.input and old_cap.output == new_cap.output
    if old_cap.version != new_cap.version or not same_schemas:
        changes["changed"].append(
            {
                "id": new_cap.id,
                "old_version": old_cap.version,
                "new_version": new_cap.version,
                "breaking": breaking,
            }
        )
