"""The capability router: capability id (+ major version) -> worker, deprecations via shims.

A deprecated id stays routable until its sunset date through its declared shim:

* alias (1 -> 1): ``replaced_by: [new.id]``, no shim needed;
* split (1 -> N): ``shim.select_by`` names the input field whose value picks the
  successor through ``shim.map`` (``shim.default`` when the field is absent); the
  selector field is removed from the payload unless ``shim.keep_selector``;
* merge (N -> 1): several deprecated ids each ``replaced_by`` the same target.

Every routed call to a deprecated id is counted per (deprecated id, caller) and
announced to ``on_deprecated_call`` callbacks; after the sunset date the call
raises :class:`~crank.errors.CapabilityGone` naming the successors (HTTP 410).
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections import Counter
from dataclasses import dataclass
from email.utils import format_datetime
from typing import TYPE_CHECKING, Any

from crank.errors import CapabilityGone, CapabilityNotFound, ManifestError, ValidationFailed
from crank.manifest import load_manifest
from crank.manifest.findings import quoted

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping
    from pathlib import Path

    from crank.manifest import Capability, Deprecation, Manifest

#: How many deprecated hops (a renamed id renamed again) a call may follow.
MAX_HOPS = 8
#: the most digits of a reference's major version (``id@MAJOR``).
MAX_MAJOR_DIGITS = 18
UNKNOWN_CALLER = "unknown"
#: distinct (id, caller) keys kept in ``deprecated_calls``/``gone_calls``; later callers
#: are counted as "other", so callers naming themselves freely cannot grow memory.
MAX_COUNTED_CALLERS = 1000
OTHER_CALLER = "other"


@dataclass(frozen=True)
class Route:
    """One live capability and the worker that serves it."""

    capability_id: str
    major: int
    worker: str
    manifest: Manifest
    capability: Capability


@dataclass(frozen=True)
class Resolution:
    """Where one call goes: the live ``target``, the payload to send it, the headers to answer.

    ``headers`` holds ``Deprecation`` (RFC 9745), ``Sunset`` (RFC 8594) and
    ``Link: <...>; rel="successor-version"`` when ``requested`` is deprecated, else ``{}``.
    """

    requested: str
    target: str
    payload: dict[str, Any]
    route: Route
    deprecation: Deprecation | None
    headers: dict[str, str]


@dataclass(frozen=True)
class _DeclaredDeprecation:
    deprecation: Deprecation
    manifest: Manifest


def split_capability_ref(ref: str) -> tuple[str, int | None]:
    """``"a.b@2"`` -> ``("a.b", 2)``; ``"a.b"`` -> ``("a.b", None)``."""
    cap_id, sep, major = ref.partition("@")
    if not sep:
        return ref, None
    # ASCII digits only: "²" and "٣" are digits to str.isdigit, and int() refuses the first
    # (as it does more than 4300 digits)
    if not (major.isascii() and major.isdigit() and len(major) <= MAX_MAJOR_DIGITS):
        raise CapabilityNotFound(
            f"{quoted(ref)} is not a capability reference",
            hint="write the id, or id@MAJOR with a whole number, e.g. email.spam_detection@1",
            subject=ref,
        )
    return cap_id, int(major)


def utc_today() -> dt.date:
    """Today in UTC: the day a sunset is counted in, as its ``Sunset`` header says (the
    last second of the sunset day, GMT), whatever the server's time zone."""
    return dt.datetime.now(dt.UTC).date()


def deprecation_headers(
    deprecation: Deprecation, *, today: dt.date, link_prefix: str = "/v1/capabilities/"
) -> dict[str, str]:
    """The RFC 9745 / RFC 8594 / RFC 8288 headers announcing a deprecated capability.

    ``Deprecation`` is ``deprecated_since`` (or ``today`` when the manifest does not
    say) at midnight UTC; ``Sunset`` is the last second of the sunset day, since the
    id keeps answering through that day.
    """
    since = deprecation.deprecated_since or today
    since_ts = int(dt.datetime.combine(since, dt.time(), tzinfo=dt.UTC).timestamp())
    return {"Deprecation": f"@{since_ts}", **sunset_headers(deprecation, link_prefix=link_prefix)}


def sunset_headers(
    deprecation: Deprecation, *, link_prefix: str = "/v1/capabilities/"
) -> dict[str, str]:
    """``Sunset`` (RFC 8594) and the successors' ``Link`` (RFC 8288): what a deprecated
    id answers with before its sunset and, refused (410), after it.

    ``Sunset`` is the last second of the sunset day, since the id keeps answering
    through that day.
    """
    last_second = dt.datetime.combine(deprecation.sunset, dt.time(23, 59, 59), tzinfo=dt.UTC)
    links = ", ".join(
        f'<{link_prefix}{succ}>; rel="successor-version"' for succ in deprecation.replaced_by
    )
    return {"Sunset": format_datetime(last_second, usegmt=True), "Link": links}


class Router:
    """The routing table of every loaded manifest."""

    def __init__(
        self,
        routes: Mapping[str, Route],
        deprecations: Mapping[str, _DeclaredDeprecation],
        *,
        today: Callable[[], dt.date] | None = None,
    ) -> None:
        self._routes = dict(routes)
        self._deprecations = dict(deprecations)
        self._today = today or utc_today
        self._lock = threading.Lock()
        self._headers: dict[tuple[str, dt.date], dict[str, str]] = {}
        self._callers: set[tuple[str, str]] = set()
        #: (deprecated id, caller or "unknown") -> routed calls.
        self.deprecated_calls: Counter[tuple[str, str]] = Counter()
        #: (deprecated id, caller or "unknown") -> calls refused after the sunset.
        self.gone_calls: Counter[tuple[str, str]] = Counter()
        #: called as ``callback(deprecated_id, caller)`` on each routed deprecated call.
        self.on_deprecated_call: list[Callable[[str, str], None]] = []

    # -- construction ------------------------------------------------------------

    @classmethod
    def from_manifests(
        cls, manifests: Iterable[Manifest], *, today: Callable[[], dt.date] | None = None
    ) -> Router:
        """Build the table; a capability or deprecated id declared twice is an error."""
        routes: dict[str, Route] = {}
        deprecations: dict[str, _DeclaredDeprecation] = {}
        legacy: dict[str, tuple[str, Manifest]] = {}
        for manifest in manifests:
            for cap in manifest.capabilities:
                if cap.id in routes:
                    _duplicate("capability", cap.id, routes[cap.id].manifest, manifest)
                routes[cap.id] = Route(cap.id, cap.major, manifest.name, manifest, cap)
            for dep in manifest.deprecated:
                if dep.id in deprecations:
                    _duplicate(
                        "deprecated capability", dep.id, deprecations[dep.id].manifest, manifest
                    )
                deprecations[dep.id] = _DeclaredDeprecation(dep, manifest)
                for path in dep.legacy_routes:
                    if path in legacy and legacy[path][0] != dep.id:
                        _duplicate("legacy route", path, legacy[path][1], manifest)
                    legacy[path] = (dep.id, manifest)
        for dep_id, declared in deprecations.items():
            if dep_id in routes:
                live = routes[dep_id].manifest
                _duplicate("capability (live and deprecated)", dep_id, live, declared.manifest)
        return cls(routes, deprecations, today=today)

    # -- queries -----------------------------------------------------------------

    def routes(self) -> list[Route]:
        """Every live capability, sorted by id."""
        return [self._routes[k] for k in sorted(self._routes)]

    def route(self, capability_id: str) -> Route | None:
        return self._routes.get(capability_id)

    def legacy_routes(self) -> dict[str, str]:
        """Legacy HTTP path (``/classify``) -> the deprecated capability id it calls."""
        out: dict[str, str] = {}
        for dep_id in sorted(self._deprecations):
            for path in self._deprecations[dep_id].deprecation.legacy_routes:
                out[path] = dep_id
        return out

    def deprecated(self, capability_id: str) -> Deprecation | None:
        declared = self._deprecations.get(split_capability_ref(capability_id)[0])
        return declared.deprecation if declared else None

    def deprecations(self) -> list[Deprecation]:
        return [self._deprecations[k].deprecation for k in sorted(self._deprecations)]

    def today(self) -> dt.date:
        """The date sunsets are compared with (a test may fix it)."""
        return self._today()

    def deprecated_call_counts(
        self,
    ) -> tuple[dict[tuple[str, str], int], dict[tuple[str, str], int]]:
        """(routed, refused after the sunset) calls per (deprecated id, caller) since this
        router was built, copied while no call is being counted."""
        with self._lock:
            return dict(self.deprecated_calls), dict(self.gone_calls)

    def is_gone(self, capability_id: str) -> bool:
        dep = self.deprecated(capability_id)
        return dep is not None and self._today() > dep.sunset

    def table(self) -> list[dict[str, Any]]:
        """One row per live or deprecated id (``crank routes``), sorted by id."""
        rows: list[dict[str, Any]] = []
        for route in self.routes():
            rows.append(
                {
                    "capability": route.capability_id,
                    "version": route.capability.version,
                    "major": route.major,
                    "worker": route.worker,
                    "status": "active",
                    "routes_to": [route.capability_id],
                    "select_by": None,
                    "sunset": None,
                    "legacy_routes": [],
                }
            )
        for dep_id in sorted(self._deprecations):
            declared = self._deprecations[dep_id]
            dep = declared.deprecation
            rows.append(
                {
                    "capability": dep_id,
                    "version": None,
                    "major": None,
                    "worker": declared.manifest.name,
                    "status": "gone" if self._today() > dep.sunset else "deprecated",
                    "routes_to": list(dep.replaced_by),
                    "select_by": dep.shim.select_by if dep.shim else None,
                    "sunset": dep.sunset.isoformat(),
                    "legacy_routes": list(dep.legacy_routes),
                }
            )
        return sorted(rows, key=lambda r: str(r["capability"]))

    # -- resolution --------------------------------------------------------------

    def resolve(
        self, capability_id: str, payload: Mapping[str, Any], *, caller: str | None = None
    ) -> Resolution:
        """Where a call to ``capability_id`` (``id`` or ``id@major``) goes, with what payload.

        Raises :class:`CapabilityNotFound` for an unknown id or major version,
        :class:`CapabilityGone` after a deprecated id's sunset, and
        :class:`ValidationFailed` when a split shim cannot pick a successor.
        """
        cap_id, major = split_capability_ref(capability_id)
        data = dict(payload)
        first = self._deprecations.get(cap_id)
        if first is None:
            route = self._live(cap_id, major, requested=capability_id)
            return Resolution(capability_id, cap_id, data, route, None, {})

        who = caller or UNKNOWN_CALLER
        with self._lock:
            if (cap_id, who) not in self._callers:
                if len(self._callers) >= MAX_COUNTED_CALLERS:
                    who = OTHER_CALLER
                else:
                    self._callers.add((cap_id, who))
        today = self._today()
        current, seen = cap_id, [cap_id]
        while (declared := self._deprecations.get(current)) is not None:
            dep = declared.deprecation
            if today > dep.sunset:
                with self._lock:
                    self.gone_calls[(cap_id, who)] += 1
                raise CapabilityGone(
                    f"capability {current!r} was retired after its sunset on "
                    f"{dep.sunset.isoformat()}; "
                    f"call {' or '.join(dep.replaced_by)} instead",
                    hint=f"move the client to {', '.join(dep.replaced_by)} "
                    "(see the worker's migration notes)",
                    subject=current,
                    successors=dep.replaced_by,
                    headers=sunset_headers(dep),
                )
            current = _successor(dep, data, declared.manifest)
            if current in seen or len(seen) > MAX_HOPS:
                raise ManifestError(
                    f"deprecated capabilities route in a loop: {' -> '.join([*seen, current])}",
                    hint="make every replaced_by/shim target a live capability",
                    subject=cap_id,
                )
            seen.append(current)
        route = self._live(current, None, requested=capability_id, via=first.deprecation)
        with self._lock:
            self.deprecated_calls[(cap_id, who)] += 1
            callbacks = list(self.on_deprecated_call)
        for callback in callbacks:
            callback(cap_id, who)
        headers = self._announcement(first.deprecation, today)
        return Resolution(capability_id, current, data, route, first.deprecation, headers)

    def announcement(self, capability_ref: str) -> dict[str, str]:
        """The ``Deprecation``, ``Sunset`` and ``Link`` headers of every answer to a call
        of ``capability_ref`` (``id`` or ``id@major``), as :meth:`resolve` gives them: a
        deprecated id's before its sunset, else none (a live id, an unknown one, or a
        retired one, whose 410 carries its own)."""
        try:
            cap_id, _ = split_capability_ref(capability_ref)
        except CapabilityNotFound:
            return {}
        declared = self._deprecations.get(cap_id)
        today = self._today()
        if declared is None or today > declared.deprecation.sunset:
            return {}
        return self._announcement(declared.deprecation, today)

    def _announcement(self, deprecation: Deprecation, today: dt.date) -> dict[str, str]:
        key = (deprecation.id, today)
        headers = self._headers.get(key)
        if headers is None:  # formatting dates is most of a shim's cost: once per id and day
            headers = self._headers[key] = deprecation_headers(deprecation, today=today)
        return dict(headers)

    def _live(
        self, cap_id: str, major: int | None, *, requested: str, via: Deprecation | None = None
    ) -> Route:
        route = self._routes.get(cap_id)
        if route is None:
            if via is not None:
                raise CapabilityNotFound(
                    f"deprecated capability {via.id!r} routes to {cap_id!r}, "
                    "which no installed worker serves",
                    hint=f"install the worker that provides {cap_id}, or fix the shim of {via.id}",
                    subject=cap_id,
                )
            known = ", ".join(sorted({*self._routes, *self._deprecations})) or "none"
            raise CapabilityNotFound(
                f"no installed worker serves capability {quoted(requested)}",
                hint=f"known capabilities: {known} (`crank routes` lists them)",
                subject=requested,
            )
        if major is not None and major != route.major:
            raise CapabilityNotFound(
                f"capability {quoted(requested)} is not served: {cap_id} is at major version "
                f"{route.major} ({route.capability.version})",
                hint=f"call {cap_id}@{route.major} or {cap_id}",
                subject=requested,
            )
        return route


def _successor(dep: Deprecation, data: dict[str, Any], manifest: Manifest) -> str:
    """The id one step closer to a live capability; may drop the selector from ``data``."""
    shim = dep.shim
    if shim is None:
        if len(dep.replaced_by) == 1:
            return dep.replaced_by[0]
        raise ValidationFailed(
            f"capability {dep.id!r} was split into {', '.join(dep.replaced_by)} and its "
            f"manifest ({manifest.path or manifest.name}) declares no shim to choose between them",
            hint=f"call one of {', '.join(dep.replaced_by)} directly",
            subject=dep.id,
            errors=[{"path": "$", "message": "no shim declared for a split capability"}],
        )
    present = shim.select_by in data
    value = data.get(shim.select_by) if present else shim.default
    if not shim.keep_selector:
        data.pop(shim.select_by, None)
    choices = ", ".join(repr(k) for k in shim.map)
    if value is None:
        raise ValidationFailed(
            f"capability {dep.id!r} needs the field {shim.select_by!r} to choose a successor",
            hint=f"send {shim.select_by!r} as one of {choices}",
            subject=dep.id,
            errors=[
                {"path": "$", "message": f"{json.dumps(shim.select_by)} is a required property"}
            ],
        )
    if not isinstance(value, str) or value not in shim.map:
        raise ValidationFailed(
            f"capability {dep.id!r}: {shim.select_by} = {value!r} is not one of {choices}",
            hint=f"send {shim.select_by!r} as one of {choices}, or call "
            f"{', '.join(dep.replaced_by)} directly",
            subject=dep.id,
            errors=[
                {"path": f"$.{shim.select_by}", "message": f"{value!r} is not one of {choices}"}
            ],
        )
    return shim.map[value]


def _duplicate(what: str, ident: str, first: Manifest, second: Manifest) -> None:
    if first is second:
        raise ManifestError(
            f"{what} {ident!r} is declared twice in {first.name} ({first.path or '?'})",
            hint="remove one of them (`crank lint` points at both)",
            subject=ident,
        )
    raise ManifestError(
        f"{what} {ident!r} is declared by two workers: {first.name} ({first.path or '?'}) "
        f"and {second.name} ({second.path or '?'})",
        hint=f"keep {ident} in one manifest; give the other a new id",
        subject=ident,
    )


def load_router(
    manifest_paths: Iterable[Path | str], *, today: Callable[[], dt.date] | None = None
) -> Router:
    """A router over the manifests at ``manifest_paths`` (the installed workers' come
    from :meth:`crank.plugins.CrankPluginManager.manifest_paths`)."""
    return Router.from_manifests((load_manifest(p) for p in manifest_paths), today=today)
