"""The compat rules CMP001-CMP008: one function each over a :class:`CompatContext`,
listed in :data:`RULES` like the lint rules (see :mod:`crank.routing.compat`)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal

from crank.manifest.findings import Finding
from crank.routing.compat_report import CompatFinding, Side
from crank.routing.schema_diff import input_narrowings, output_breaks, without_field

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

    from crank.manifest import Capability, Deprecation, LoadedDocument, Manifest
    from crank.routing.schema_diff import SchemaChange

DEFAULT_MIN_GRACE_DAYS = 90
Path = tuple[str | int, ...]


@dataclass(frozen=True)
class CompatContext:
    """What a compat rule sees: both manifests, indexed; their documents (for line:col);
    the date and the minimum grace period."""

    old: Manifest
    new: Manifest
    today: dt.date
    min_grace_days: int = DEFAULT_MIN_GRACE_DAYS
    old_document: LoadedDocument | None = None
    new_document: LoadedDocument | None = None
    labels: tuple[str, str] = ("<old>", "<new>")

    @cached_property
    def old_caps(self) -> dict[str, tuple[int, Capability]]:
        return {c.id: (i, c) for i, c in enumerate(self.old.capabilities)}

    @cached_property
    def new_caps(self) -> dict[str, tuple[int, Capability]]:
        return {c.id: (i, c) for i, c in enumerate(self.new.capabilities)}

    @cached_property
    def old_deps(self) -> dict[str, tuple[int, Deprecation]]:
        return {d.id: (i, d) for i, d in enumerate(self.old.deprecated)}

    @cached_property
    def new_deps(self) -> dict[str, tuple[int, Deprecation]]:
        return {d.id: (i, d) for i, d in enumerate(self.new.deprecated)}

    @cached_property
    def routable(self) -> set[str]:
        """Ids the new manifest can route: live capabilities and deprecated entries."""
        return set(self.new_caps) | set(self.new_deps)

    @cached_property
    def kept(self) -> dict[str, Contract]:
        """How the contract of each capability live in both manifests changed."""
        return {
            cap_id: Contract(
                self.old_caps[cap_id][1],
                *self.new_caps[cap_id],
            )
            for cap_id in sorted(set(self.old_caps) & set(self.new_caps))
        }

    def newly_deprecated(self) -> Iterator[tuple[Path, Deprecation, Capability]]:
        """Deprecated entries of the new manifest that were live capabilities in the old."""
        for dep_id, (index, dep) in sorted(self.new_deps.items()):
            if dep_id in self.old_caps:
                yield ("deprecated", index), dep, self.old_caps[dep_id][1]

    def finding(
        self,
        rule: str,
        capability: str,
        side: Side,
        path: Path,
        message: str,
        hint: str,
        *,
        warning: bool = False,
    ) -> CompatFinding:
        """A finding located at ``path`` in the old or new document."""
        doc = self.old_document if side == "old" else self.new_document
        line, col = doc.position(path) if doc is not None else (1, 1)
        file = self.labels[0 if side == "old" else 1]
        severity: Literal["error", "warning"] = "warning" if warning else "error"
        return CompatFinding(
            Finding(file, line, col, rule, message, severity, path, hint), capability, side
        )


@dataclass(frozen=True)
class Contract:
    """A capability live in both manifests, and how its schemas changed."""

    old: Capability
    index: int
    new: Capability

    @property
    def where(self) -> Path:
        return ("capabilities", self.index)

    @property
    def bumped(self) -> bool:
        return self.new.major > self.old.major

    @cached_property
    def narrowed(self) -> list[SchemaChange]:
        return input_narrowings(self.old.input, self.new.input)

    @cached_property
    def broken(self) -> list[SchemaChange]:
        return output_breaks(self.old.output, self.new.output)

    @property
    def streaming_changed(self) -> bool:
        """A streaming capability answers a plain call ``{"events": [...]}``, not one
        output: turning ``streaming`` on or off changes every answer's shape."""
        return self.old.streaming != self.new.streaming

    @property
    def timeout_shortened(self) -> bool:
        """A call that ended in time under the old ``timeout_s`` may now end TIMEOUT (504)."""
        return self.new.timeout_s < self.old.timeout_s

    @property
    def removed_errors(self) -> list[tuple[int, str]]:
        """(index in the old ``errors``, code) of each declared error code the new contract
        drops: a client that handles the code gets that failure under another one."""
        kept = {e.code for e in self.new.errors}
        return [(i, e.code) for i, e in enumerate(self.old.errors) if e.code not in kept]

    @property
    def failures_changed(self) -> bool:
        """Whether how a call fails changed at all (errors, timeout_s, max_attempts)."""
        return (self.old.errors, self.old.timeout_s, self.old.max_attempts) != (
            self.new.errors,
            self.new.timeout_s,
            self.new.max_attempts,
        )

    @property
    def breaking(self) -> bool:
        return bool(
            self.narrowed
            or self.broken
            or self.streaming_changed
            or self.timeout_shortened
            or self.removed_errors
        )


# --- the rules: one function each --------------------------------------------------


def removed_without_deprecation(ctx: CompatContext) -> Iterator[CompatFinding]:
    for cap_id in sorted(set(ctx.old_caps) - set(ctx.new_caps)):
        index, cap = ctx.old_caps[cap_id]
        if cap_id in ctx.new_deps:
            continue
        yield ctx.finding(
            "CMP001",
            cap_id,
            "old",
            ("capabilities", index, "id"),
            f"capability {cap_id!r} ({cap.version}) was removed without a deprecated entry: "
            "clients calling it are stranded",
            f"keep it, or add a `deprecated:` entry for {cap_id} with replaced_by, a shim "
            f"if it was split, and a sunset at least {ctx.min_grace_days} days away",
        )


def deprecation_removed_before_sunset(ctx: CompatContext) -> Iterator[CompatFinding]:
    yield from _legacy_routes_removed(ctx)
    for dep_id in sorted(set(ctx.old_deps) - set(ctx.new_deps)):
        index, dep = ctx.old_deps[dep_id]
        if dep_id in ctx.new_caps:
            continue  # un-deprecated: it is live again
        if ctx.today <= dep.sunset:
            yield ctx.finding(
                "CMP002",
                dep_id,
                "old",
                ("deprecated", index, "id"),
                f"deprecated capability {dep_id!r} was removed before its sunset "
                f"({dep.sunset.isoformat()}): clients still calling it are stranded",
                f"keep the deprecated entry until {dep.sunset.isoformat()} has passed",
            )


def deprecated_cannot_be_routed(ctx: CompatContext) -> Iterator[CompatFinding]:
    for _, (index, dep) in sorted(ctx.new_deps.items()):
        yield from _unroutable(ctx, dep, ("deprecated", index))
    for base, dep, old_cap in ctx.newly_deprecated():
        yield from _shim_misses_old_calls(ctx, dep, base, old_cap)
    for dep_id in sorted(set(ctx.old_deps) & set(ctx.new_deps)):
        yield from _rerouted(ctx, ctx.old_deps[dep_id][1], *ctx.new_deps[dep_id])


def input_narrowed(ctx: CompatContext) -> Iterator[CompatFinding]:
    for contract in ctx.kept.values():
        for change in contract.narrowed:
            yield ctx.finding(
                "CMP004",
                contract.new.id,
                "new",
                (*contract.where, "input", *change.schema_path),
                f"input of {contract.new.id!r} narrowed at {change.path}: {change.detail}",
                "accept what the old schema accepted (make new fields optional, keep enum "
                "values), or add a new capability id and deprecate this one",
                warning=contract.bumped,
            )
    for _, dep, old_cap in ctx.newly_deprecated():
        old_input = _input_through_shim(dep, old_cap)
        for target, index, new_cap in _successors(ctx, dep):
            for change in input_narrowings(old_input, new_cap.input):
                yield ctx.finding(
                    "CMP004",
                    dep.id,
                    "new",
                    ("capabilities", index, "input", *change.schema_path),
                    f"calls to deprecated {dep.id!r} routed to {target!r} break: input at "
                    f"{change.path}: {change.detail}",
                    f"make {target} accept every payload {dep.id} accepted"
                    + (_MINUS_SELECTOR if _drops_selector(dep) else ""),
                )


def output_broken(ctx: CompatContext) -> Iterator[CompatFinding]:
    for contract in ctx.kept.values():
        if contract.streaming_changed:
            cap_id = contract.new.id
            yield ctx.finding(
                "CMP005",
                cap_id,
                "new",
                (*contract.where, "streaming"),
                f"{cap_id!r} became streaming: a plain call now answers "
                '{"events": [...]} instead of one output'
                if contract.new.streaming
                else f"{cap_id!r} is no longer streaming: a call asking for "
                "text/event-stream now gets one JSON output, not events",
                "keep streaming as it was, or add the new contract under a new id and "
                f"deprecate {cap_id}",
                warning=contract.bumped,
            )
        for change in contract.broken:
            yield ctx.finding(
                "CMP005",
                contract.new.id,
                "new",
                (*contract.where, "output", *change.schema_path),
                f"output of {contract.new.id!r} broken at {change.path}: {change.detail}",
                "keep returning what the old schema promised (add fields, do not remove or retype)",
                warning=contract.bumped,
            )
    for _, dep, old_cap in ctx.newly_deprecated():
        for target, index, new_cap in _successors(ctx, dep):
            for change in output_breaks(old_cap.output, new_cap.output):
                yield ctx.finding(
                    "CMP005",
                    dep.id,
                    "new",
                    ("capabilities", index, "output", *change.schema_path),
                    f"clients of deprecated {dep.id!r} routed to {target!r} get a different "
                    f"output: {change.path}: {change.detail}",
                    f"tell the clients of {dep.id} (the Deprecation header does) to move to "
                    f"{target}",
                    warning=True,
                )


def failures_tightened(ctx: CompatContext) -> Iterator[CompatFinding]:
    """How a call fails is part of its contract: a shorter ``timeout_s`` or a dropped error
    code breaks clients (warnings after a major bump, as CMP004/CMP005); fewer attempts,
    or a code no longer retryable, only makes failures more frequent (warnings)."""
    for contract in ctx.kept.values():
        old, new, cap_id = contract.old, contract.new, contract.new.id
        if contract.timeout_shortened:
            yield ctx.finding(
                "CMP008",
                cap_id,
                "new",
                (*contract.where, "timeout_s"),
                f"the timeout of {cap_id!r} went down from {old.timeout_s:g} s to "
                f"{new.timeout_s:g} s: a call taking longer, which ended in time before, "
                "now ends TIMEOUT (504)",
                f"keep timeout_s at {old.timeout_s:g} or more, or add the new contract under "
                f"a new id and deprecate {cap_id}",
                warning=contract.bumped,
            )
        old_index = ctx.old_caps[cap_id][0]
        for i, code in contract.removed_errors:
            yield ctx.finding(
                "CMP008",
                cap_id,
                "old",
                ("capabilities", old_index, "errors", i, "code"),
                f"error code {code} of {cap_id!r} was removed: clients that handle it get "
                "that failure under another code",
                f"keep declaring {code} (a handler need not raise it), or add the new "
                f"contract under a new id and deprecate {cap_id}",
                warning=contract.bumped,
            )
        if new.max_attempts < old.max_attempts:
            yield ctx.finding(
                "CMP008",
                cap_id,
                "new",
                (*contract.where, "max_attempts"),
                f"max_attempts of {cap_id!r} went down from {old.max_attempts} to "
                f"{new.max_attempts}: a task failing with a retryable error is dead-lettered "
                "sooner",
                "make sure clients can live with fewer retries",
                warning=True,
            )
        for j, error in enumerate(new.errors):
            before = old.error(error.code)
            if before is not None and before.retryable and not error.retryable:
                yield ctx.finding(
                    "CMP008",
                    cap_id,
                    "new",
                    (*contract.where, "errors", j, "retryable"),
                    f"error code {error.code} of {cap_id!r} is no longer retryable: a task "
                    "failing with it now fails at its first attempt",
                    "make sure clients can live without these retries",
                    warning=True,
                )
    for _, dep, old_cap in ctx.newly_deprecated():
        for target, index, new_cap in _successors(ctx, dep):
            yield from _successor_fails_sooner(ctx, dep, old_cap, target, index, new_cap)


def _successor_fails_sooner(
    ctx: CompatContext,
    dep: Deprecation,
    old_cap: Capability,
    target: str,
    index: int,
    new_cap: Capability,
) -> Iterator[CompatFinding]:
    """Calls to a newly deprecated id run as its successor: warn where they now time out
    sooner or fail under other codes (the deprecation headers tell clients to move)."""
    hint = f"tell the clients of {dep.id} (the Deprecation header does) to move to {target}"
    if new_cap.timeout_s < old_cap.timeout_s:
        yield ctx.finding(
            "CMP008",
            dep.id,
            "new",
            ("capabilities", index, "timeout_s"),
            f"calls to deprecated {dep.id!r} routed to {target!r} get its timeout of "
            f"{new_cap.timeout_s:g} s instead of {old_cap.timeout_s:g} s",
            hint,
            warning=True,
        )
    kept = {e.code for e in new_cap.errors}
    missing = [e.code for e in old_cap.errors if e.code not in kept]
    if missing:
        yield ctx.finding(
            "CMP008",
            dep.id,
            "new",
            ("capabilities", index, "errors"),
            f"calls to deprecated {dep.id!r} routed to {target!r} can no longer fail with "
            f"{', '.join(missing)}, which {target} does not declare",
            hint,
            warning=True,
        )


def breaking_without_major_bump(ctx: CompatContext) -> Iterator[CompatFinding]:
    for contract in ctx.kept.values():
        old, new = contract.old, contract.new
        if new.major < old.major:
            yield ctx.finding(
                "CMP006",
                new.id,
                "new",
                (*contract.where, "version"),
                f"the major version of {new.id!r} went down, {old.version} -> {new.version}: "
                f"clients pinned to {new.id}@{old.major} get 404",
                f"keep the version at {old.major}.x or above; a contract's version only goes up",
            )
            continue
        if contract.breaking and not contract.bumped:
            yield ctx.finding(
                "CMP006",
                new.id,
                "new",
                (*contract.where, "version"),
                f"{new.id!r} changed incompatibly but its version went {old.version} -> "
                f"{new.version} without a major bump",
                f"bump the version to {old.major + 1}.0.0, or better keep {new.id} "
                "compatible and add the new contract under a new id",
            )


def sunset_too_soon(ctx: CompatContext) -> Iterator[CompatFinding]:
    for dep_id, (index, dep) in sorted(ctx.new_deps.items()):
        where: Path = ("deprecated", index, "sunset")
        before = ctx.old_deps.get(dep_id)
        if before is not None:
            old_sunset = before[1].sunset
            if dep.sunset < old_sunset:
                yield ctx.finding(
                    "CMP007",
                    dep.id,
                    "new",
                    where,
                    f"the sunset of {dep.id!r} moved earlier, from {old_sunset.isoformat()} to "
                    f"{dep.sunset.isoformat()}: clients planned for the announced date",
                    f"keep the sunset at {old_sunset.isoformat()} or later",
                )
                continue
            if dep.sunset == old_sunset:
                continue  # announced before: its grace period was checked then
        start = max(ctx.today, dep.deprecated_since) if dep.deprecated_since else ctx.today
        grace = (dep.sunset - start).days
        if grace < ctx.min_grace_days:
            since = "today" if start == ctx.today else f"deprecated_since {start.isoformat()}"
            try:
                earliest = start + dt.timedelta(days=ctx.min_grace_days)
                hint = f"set the sunset on or after {earliest.isoformat()}"
            except OverflowError:  # the grace would end after 9999-12-31, the last date
                hint = (
                    "set deprecated_since earlier"
                    if start != ctx.today
                    else "ask for a shorter minimum grace period"
                )
            yield ctx.finding(
                "CMP007",
                dep.id,
                "new",
                where,
                f"{dep.id!r} gets {grace} days of grace ({since} to sunset "
                f"{dep.sunset.isoformat()}), fewer than the minimum {ctx.min_grace_days}",
                hint,
            )


@dataclass(frozen=True)
class CompatRule:
    """One compat rule: a stable id, a one-line summary and the function that checks it."""

    id: str
    summary: str
    check: Callable[[CompatContext], Iterable[CompatFinding]]


RULES: tuple[CompatRule, ...] = (
    CompatRule(
        "CMP001", "capability removed without a deprecated entry", removed_without_deprecation
    ),
    CompatRule(
        "CMP002", "deprecated entry removed before its sunset", deprecation_removed_before_sunset
    ),
    CompatRule("CMP003", "deprecated capability cannot be routed", deprecated_cannot_be_routed),
    CompatRule("CMP004", "input narrowed", input_narrowed),
    CompatRule("CMP005", "output broken", output_broken),
    CompatRule(
        "CMP006",
        "breaking change without a major version bump, or a major version lowered",
        breaking_without_major_bump,
    ),
    CompatRule("CMP007", "sunset moved earlier or grace period too short", sunset_too_soon),
    CompatRule(
        "CMP008",
        "failures tightened: timeout_s shortened, an error code removed; fewer attempts "
        "or an error no longer retryable (warnings)",
        failures_tightened,
    ),
)


# --- what the rules share ----------------------------------------------------------


def _targets(dep: Deprecation) -> list[str]:
    found = list(dep.replaced_by)
    if dep.shim is not None:
        found += [t for t in dep.shim.map.values() if t not in found]
    return found


def _successors(ctx: CompatContext, dep: Deprecation) -> Iterator[tuple[str, int, Capability]]:
    """The live capabilities of the new manifest that calls to ``dep`` are routed to."""
    for target in _targets(dep):
        if target in ctx.new_caps:
            index, cap = ctx.new_caps[target]
            yield target, index, cap


_MINUS_SELECTOR = " (minus the selector)"


def _drops_selector(dep: Deprecation) -> bool:
    """Whether the shim takes its selector out of what it routes (an alias has none)."""
    return dep.shim is not None and not dep.shim.keep_selector


def _input_through_shim(dep: Deprecation, old_cap: Capability) -> Any:
    """The old input a successor must accept: minus the selector, unless the shim keeps it."""
    if dep.shim is not None and _drops_selector(dep):
        return without_field(old_cap.input, dep.shim.select_by)
    return old_cap.input


def _unroutable(ctx: CompatContext, dep: Deprecation, base: Path) -> Iterator[CompatFinding]:
    hint = "point replaced_by and shim.map at capabilities this manifest declares"
    for i, target in enumerate(dep.replaced_by):
        if target not in ctx.routable:
            yield ctx.finding(
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
            yield ctx.finding(
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
        if target not in ctx.routable:
            yield ctx.finding(
                "CMP003",
                dep.id,
                "new",
                (*base, "shim", "map", key),
                f"the shim of {dep.id!r} routes {shim.select_by}={key!r} to {target!r}, "
                "which this manifest does not declare",
                hint,
            )
    if shim.default is not None and shim.default not in shim.map:
        yield ctx.finding(
            "CMP003",
            dep.id,
            "new",
            (*base, "shim", "default"),
            f"the shim default {shim.default!r} of {dep.id!r} is not a key of its map "
            f"({', '.join(shim.map)})",
            "make shim.default one of the shim.map keys",
        )


def _shim_misses_old_calls(
    ctx: CompatContext, dep: Deprecation, base: Path, old_cap: Capability
) -> Iterator[CompatFinding]:
    """Old payloads of a capability now deprecated must each reach a successor."""
    shim = dep.shim
    if shim is None:
        return
    old_input: Any = old_cap.input
    selector = old_input.get("properties", {}).get(shim.select_by) if old_input else None
    values = selector.get("enum") if isinstance(selector, dict) else None
    declared = selector.get("type") if isinstance(selector, dict) else None
    types = [declared] if isinstance(declared, str) else declared
    if values is None and isinstance(types, list) and "string" not in types:
        # the router picks a successor by a text value only (shim.map keys are text)
        yield ctx.finding(
            "CMP003",
            dep.id,
            "new",
            (*base, "shim", "select_by"),
            f"the shim of {dep.id!r} selects by {shim.select_by!r}, which old clients send "
            f"as {' or '.join(str(t) for t in types)}: the shim routes text values only",
            "select by a field old clients send as text, or keep the old capability",
        )
    if isinstance(values, list):
        uncovered = [v for v in values if not (isinstance(v, str) and v in shim.map)]
        if uncovered:
            shown = ", ".join(repr(v) for v in uncovered)
            yield ctx.finding(
                "CMP003",
                dep.id,
                "new",
                (*base, "shim", "map"),
                f"the shim of {dep.id!r} does not route {shim.select_by}={shown}, which "
                "old clients may send",
                f"map every value of {shim.select_by} the old input allowed",
            )
    if shim.default is None and shim.select_by not in old_input.get("required", []):
        yield ctx.finding(
            "CMP003",
            dep.id,
            "new",
            (*base, "shim"),
            f"old calls to {dep.id!r} may omit {shim.select_by!r}, and its shim has no default",
            f"add shim.default naming the successor for calls without {shim.select_by}",
        )


def _legacy_routes_removed(ctx: CompatContext) -> Iterator[CompatFinding]:
    """A legacy route of a deprecated entry kept in the new manifest answers until the
    sunset, like the id itself (a removed entry is reported whole)."""
    kept = {route for dep in ctx.new.deprecated for route in dep.legacy_routes}
    for dep_id in sorted(set(ctx.old_deps) & set(ctx.new_deps)):
        index, dep = ctx.old_deps[dep_id]
        if ctx.today > dep.sunset:
            continue
        for i, route in enumerate(dep.legacy_routes):
            if route not in kept:
                yield ctx.finding(
                    "CMP002",
                    dep_id,
                    "old",
                    ("deprecated", index, "legacy_routes", i),
                    f"legacy route {route} of deprecated capability {dep_id!r} was removed "
                    f"before its sunset ({dep.sunset.isoformat()}): clients calling it get 404",
                    f"keep {route} in legacy_routes until {dep.sunset.isoformat()} has passed",
                )


_ABSENT = object()


def _route(dep: Deprecation, field: str | None, value: object) -> str | None:
    """The successor the router picks for a call to ``dep`` whose payload has ``field``
    set to ``value`` (``_ABSENT``: a payload without it); None when the call is refused."""
    shim = dep.shim
    if shim is None:
        return dep.replaced_by[0] if len(dep.replaced_by) == 1 else None
    picked = value if field == shim.select_by and value is not _ABSENT else shim.default
    return shim.map.get(picked) if isinstance(picked, str) else None


def _final(ctx: CompatContext, target: str) -> str:
    """``target`` followed through renames (one-successor deprecations) of the new manifest."""
    seen = {target}
    while target in ctx.new_deps:
        dep = ctx.new_deps[target][1]
        if dep.shim is not None or len(dep.replaced_by) != 1 or dep.replaced_by[0] in seen:
            break
        target = dep.replaced_by[0]
        seen.add(target)
    return target


def _rerouted(
    ctx: CompatContext, old: Deprecation, index: int, new: Deprecation
) -> Iterator[CompatFinding]:
    """Every call the old deprecated entry routed must reach the same successor until the
    sunset: a shim value, default or selector dropped or changed strands old clients or
    silently hands them another capability."""
    if ctx.today > old.sunset or (new.shim is None and len(new.replaced_by) > 1):
        return  # 410 Gone either way / a split without a shim is reported already
    field = old.shim.select_by if old.shim is not None else None
    calls: list[tuple[object, str]] = [
        (value, f"{field}={value!r}") for value in (old.shim.map if old.shim else ())
    ]
    calls.append((_ABSENT, f"calls without {field!r}" if field else "its calls"))
    where: Path = ("deprecated", index, *(("shim",) if new.shim is not None else ()))
    for value, described in calls:
        before = _route(old, field, value)
        if before is None:
            continue  # refused before too
        after = _route(new, field, value)
        if after is None:
            yield ctx.finding(
                "CMP003",
                old.id,
                "new",
                where,
                f"deprecated capability {old.id!r} no longer routes {described} (to "
                f"{before} before): old clients get 400",
                f"keep routing {described} to {before} until the sunset ({old.sunset.isoformat()})",
            )
        elif _final(ctx, after) != _final(ctx, before):
            yield ctx.finding(
                "CMP003",
                old.id,
                "new",
                where,
                f"deprecated capability {old.id!r} now routes {described} to {after} "
                f"instead of {before}: old clients get another capability's answer",
                f"keep routing {described} to {before} until the sunset ({old.sunset.isoformat()})",
            )
