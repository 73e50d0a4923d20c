"""Router semantics: live routes, alias, split, merge, chains, errors and the table."""

from __future__ import annotations

import datetime as dt
import threading
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from crank.errors import CapabilityGone, CapabilityNotFound, ManifestError, ValidationFailed
from crank.hookspecs import hookimpl
from crank.manifest import Manifest, manifest_from_dict
from crank.plugins import (
    DISABLE_ENV,
    ENTRY_POINT_GROUP,
    get_plugin_manager,
    reset_plugin_manager,
)
from crank.routing import Router, load_router, split_capability_ref

from .conftest import WORKERS

DAY = dt.date(2026, 12, 1)
SCHEMA = {"type": "object"}


def manifest(
    name: str,
    caps: dict[str, str],
    deprecated: list[dict[str, Any]] = (),  # type: ignore[assignment]
    path: str | None = None,
) -> Manifest:
    doc = {
        "apiVersion": "crank.dev/v1",
        "kind": "Worker",
        "metadata": {"name": name, "version": "1.0.0"},
        "worker": {"entrypoint": "x.y:Z"},
        "capabilities": [
            {"id": cid, "version": ver, "input": SCHEMA, "output": SCHEMA}
            for cid, ver in caps.items()
        ],
        "deprecated": [{"sunset": "2027-03-31", **d} for d in deprecated],
    }
    return manifest_from_dict(doc, Path(path) if path else None)


def router(*manifests: Manifest) -> Router:
    return Router.from_manifests(manifests, today=lambda: DAY)


def test_live_route_by_id_and_major() -> None:
    r = router(manifest("a", {"text.upper": "2.1.0"}), manifest("b", {"text.lower": "1.0.0"}))
    res = r.resolve("text.upper@2", {"text": "x"})
    assert (res.requested, res.target, res.route.worker, res.route.major) == (
        "text.upper@2",
        "text.upper",
        "a",
        2,
    )
    assert res.payload == {"text": "x"} and res.deprecation is None and res.headers == {}
    assert [route.capability_id for route in r.routes()] == ["text.lower", "text.upper"]


def test_unknown_id_and_wrong_major_are_not_found() -> None:
    r = router(manifest("a", {"text.upper": "2.1.0"}))
    with pytest.raises(CapabilityNotFound) as info:
        r.resolve("text.uper", {})
    assert info.value.message == "no installed worker serves capability 'text.uper'"
    assert info.value.hint == "known capabilities: text.upper (`crank routes` lists them)"
    with pytest.raises(CapabilityNotFound) as wrong:
        r.resolve("text.upper@1", {})
    assert wrong.value.message == (
        "capability 'text.upper@1' is not served: text.upper is at major version 2 (2.1.0)"
    )
    assert wrong.value.hint == "call text.upper@2 or text.upper"


def test_capability_refs() -> None:
    assert split_capability_ref("a.b@12") == ("a.b", 12)
    assert split_capability_ref("a.b") == ("a.b", None)
    with pytest.raises(CapabilityNotFound, match="is not a capability reference"):
        split_capability_ref("a.b@latest")
    # digits to str.isdigit, not to int() (a ValueError) nor to a person
    for major in ("\u00b2", "\u0663"):
        with pytest.raises(CapabilityNotFound, match="is not a capability reference"):
            split_capability_ref(f"a.b@{major}")


def test_alias_routes_and_keeps_the_payload() -> None:
    r = router(
        manifest(
            "a", {"text.upper": "1.0.0"}, [{"id": "text.shout", "replaced_by": ["text.upper"]}]
        )
    )
    res = r.resolve("text.shout", {"text": "x", "type": "kept"}, caller="c")
    assert (res.target, res.payload) == ("text.upper", {"text": "x", "type": "kept"})
    assert res.deprecation is not None and res.deprecation.id == "text.shout"
    assert res.headers["Link"] == '</v1/capabilities/text.upper>; rel="successor-version"'
    # no deprecated_since: the Deprecation date is the day of the call
    assert res.headers["Deprecation"] == "@1796083200"  # 2026-12-01T00:00:00Z


def test_merge_routes_several_old_ids_to_one_target() -> None:
    r = router(
        manifest(
            "a",
            {"doc.convert": "1.0.0"},
            [
                {"id": "doc.to_pdf", "replaced_by": ["doc.convert"]},
                {"id": "doc.to_html", "replaced_by": ["doc.convert"]},
            ],
        )
    )
    assert r.resolve("doc.to_pdf", {}, caller="x").target == "doc.convert"
    assert r.resolve("doc.to_html", {}, caller="x").target == "doc.convert"
    assert r.resolve("doc.to_html", {}, caller="y").target == "doc.convert"
    assert r.deprecated_calls == {
        ("doc.to_pdf", "x"): 1,
        ("doc.to_html", "x"): 1,
        ("doc.to_html", "y"): 1,
    }


SPLIT = {
    "id": "email.classification",
    "replaced_by": ["email.spam", "email.bill"],
    "shim": {"select_by": "type", "map": {"spam": "email.spam", "bill": "email.bill"}},
}


def split_router(**shim: Any) -> Router:
    dep = {**SPLIT, "shim": {**SPLIT["shim"], **shim}}
    return router(manifest("e", {"email.spam": "1.0.0", "email.bill": "1.0.0"}, [dep]))


def test_split_keep_selector() -> None:
    res = split_router(keep_selector=True).resolve("email.classification", {"type": "bill"})
    assert (res.target, res.payload) == ("email.bill", {"type": "bill"})


def test_split_value_not_in_the_map_is_a_validation_error() -> None:
    with pytest.raises(ValidationFailed) as info:
        split_router().resolve("email.classification", {"text": "x", "type": "phishing"})
    assert info.value.message == (
        "capability 'email.classification': type = 'phishing' is not one of 'spam', 'bill'"
    )
    assert info.value.errors == [
        {"path": "$.type", "message": "'phishing' is not one of 'spam', 'bill'"}
    ]


def test_split_without_selector_and_default_is_a_validation_error() -> None:
    r = split_router()
    with pytest.raises(ValidationFailed, match="needs the field 'type' to choose a successor"):
        r.resolve("email.classification", {"text": "x"})
    assert r.deprecated_calls == {}


def test_split_without_a_shim_cannot_route() -> None:
    dep = {k: v for k, v in SPLIT.items() if k != "shim"}
    r = router(manifest("e", {"email.spam": "1.0.0", "email.bill": "1.0.0"}, [dep]))
    with pytest.raises(ValidationFailed, match="declares no shim to choose between them"):
        r.resolve("email.classification", {"type": "bill"})


def test_renamed_twice_follows_the_chain() -> None:
    r = router(
        manifest(
            "a",
            {"text.v3": "1.0.0"},
            [
                {"id": "text.v1", "replaced_by": ["text.v2"]},
                {"id": "text.v2", "replaced_by": ["text.v3"]},
            ],
        )
    )
    res = r.resolve("text.v1", {})
    assert res.target == "text.v3"
    assert res.deprecation is not None and res.deprecation.id == "text.v1"
    assert r.deprecated_calls == {("text.v1", "unknown"): 1}


def test_a_routing_loop_is_reported() -> None:
    r = router(
        manifest(
            "a",
            {"text.x": "1.0.0"},
            [
                {"id": "text.v1", "replaced_by": ["text.v2"]},
                {"id": "text.v2", "replaced_by": ["text.v1"]},
            ],
        )
    )
    with pytest.raises(ManifestError, match=r"in a loop: text\.v1 -> text\.v2 -> text\.v1"):
        r.resolve("text.v1", {})


def test_shim_target_no_worker_serves() -> None:
    r = router(
        manifest("a", {"text.x": "1.0.0"}, [{"id": "text.old", "replaced_by": ["text.gone"]}])
    )
    with pytest.raises(CapabilityNotFound) as info:
        r.resolve("text.old", {})
    assert info.value.message == (
        "deprecated capability 'text.old' routes to 'text.gone', which no installed worker serves"
    )


def test_gone_after_sunset_even_through_a_chain() -> None:
    r = Router.from_manifests(
        [
            manifest(
                "a",
                {"text.v3": "1.0.0"},
                [
                    {"id": "text.v1", "replaced_by": ["text.v2"], "sunset": "2027-06-30"},
                    {"id": "text.v2", "replaced_by": ["text.v3"], "sunset": "2027-01-31"},
                ],
            )
        ],
        today=lambda: dt.date(2027, 2, 1),
    )
    with pytest.raises(CapabilityGone) as info:
        r.resolve("text.v1", {})
    assert info.value.successors == ("text.v3",)
    assert r.is_gone("text.v2") and not r.is_gone("text.v1")


def test_a_sunset_is_counted_in_utc_whatever_the_servers_time_zone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The Sunset header promises the id until 23:59:59 GMT of its sunset day: a server
    east of UTC retired it hours early, one west of it answered past the promise."""
    import time

    utc_hour = dt.datetime.now(dt.UTC).hour
    # a zone whose local date is not the UTC date at this hour (POSIX signs are inverted)
    monkeypatch.setenv("TZ", "Etc/GMT-14" if utc_hour >= 12 else "Etc/GMT+12")
    time.tzset()
    try:
        before = dt.datetime.now(dt.UTC).date()
        local = dt.date.today()
        today = Router.from_manifests([manifest("a", {"text.v2": "1.0.0"})]).today()
        after = dt.datetime.now(dt.UTC).date()
    finally:
        monkeypatch.undo()
        time.tzset()
    assert local not in (before, after)  # the zone does differ
    assert today in (before, after)


def test_duplicate_capability_names_both_manifests() -> None:
    with pytest.raises(ManifestError) as info:
        Router.from_manifests(
            [
                manifest("first", {"text.upper": "1.0.0"}, path="/w/first/crank.yaml"),
                manifest("second", {"text.upper": "1.0.0"}, path="/w/second/crank.yaml"),
            ]
        )
    assert info.value.message == (
        "capability 'text.upper' is declared by two workers: first (/w/first/crank.yaml) "
        "and second (/w/second/crank.yaml)"
    )
    assert info.value.hint == "keep text.upper in one manifest; give the other a new id"


def test_a_legacy_route_twice_in_one_manifest_is_not_called_two_workers() -> None:
    """The message named 'two workers: demo (t.yaml) and demo (t.yaml)'."""
    one = manifest(
        "demo",
        {"text.a": "1.0.0", "text.b": "1.0.0"},
        [
            {"id": "text.x", "replaced_by": ["text.a"], "legacy_routes": ["/x"]},
            {"id": "text.y", "replaced_by": ["text.b"], "legacy_routes": ["/x"]},
        ],
        path="/w/demo/crank.yaml",
    )
    with pytest.raises(ManifestError) as info:
        Router.from_manifests([one])
    assert info.value.message == (
        "legacy route '/x' is declared twice in demo (/w/demo/crank.yaml)"
    )


def test_deprecated_id_that_is_also_live_is_a_conflict() -> None:
    with pytest.raises(ManifestError, match=r"capability \(live and deprecated\) 'text.old'"):
        Router.from_manifests(
            [
                manifest("a", {"text.old": "1.0.0"}),
                manifest(
                    "b", {"text.new": "1.0.0"}, [{"id": "text.old", "replaced_by": ["text.new"]}]
                ),
            ]
        )


def test_one_legacy_path_for_two_ids_is_a_conflict() -> None:
    with pytest.raises(ManifestError, match="legacy route '/classify' is declared by two workers"):
        Router.from_manifests(
            [
                manifest(
                    "a",
                    {"a.new": "1.0.0"},
                    [{"id": "a.old", "replaced_by": ["a.new"], "legacy_routes": ["/classify"]}],
                ),
                manifest(
                    "b",
                    {"b.new": "1.0.0"},
                    [{"id": "b.old", "replaced_by": ["b.new"], "legacy_routes": ["/classify"]}],
                ),
            ]
        )


def test_table_and_legacy_routes() -> None:
    r = split_router(default="spam")
    r2 = Router.from_manifests(
        [
            manifest(
                "e",
                {"email.spam": "1.0.0"},
                [
                    {
                        "id": "email.old",
                        "replaced_by": ["email.spam"],
                        "sunset": "2026-01-01",
                        "legacy_routes": ["/old", "/older"],
                    }
                ],
            )
        ],
        today=lambda: DAY,
    )
    assert r2.legacy_routes() == {"/old": "email.old", "/older": "email.old"}
    assert r2.table() == [
        {
            "capability": "email.old",
            "version": None,
            "major": None,
            "worker": "e",
            "status": "gone",
            "routes_to": ["email.spam"],
            "select_by": None,
            "sunset": "2026-01-01",
            "legacy_routes": ["/old", "/older"],
        },
        {
            "capability": "email.spam",
            "version": "1.0.0",
            "major": 1,
            "worker": "e",
            "status": "active",
            "routes_to": ["email.spam"],
            "select_by": None,
            "sunset": None,
            "legacy_routes": [],
        },
    ]
    assert [row["status"] for row in r.table()] == ["active", "deprecated", "active"]
    assert r.deprecated("email.classification@1") is not None
    assert r.deprecated("email.spam") is None


def test_counting_is_safe_across_threads() -> None:
    r = split_router(default="spam")

    def call() -> None:
        for _ in range(200):
            r.resolve("email.classification", {}, caller="t")

    threads = [threading.Thread(target=call) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert r.deprecated_calls == {("email.classification", "t"): 800}


class _EmailPlugin:
    @hookimpl
    def crank_register_workers(self, register: Any) -> None:
        register(WORKERS / "crank_fixture_email" / "crank.yaml")


def test_load_router_reads_every_installed_workers_manifest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # only this test's plugin: block whatever worker packages this machine has installed
    installed = [ep.name for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)]
    monkeypatch.setenv(DISABLE_ENV, ",".join(installed))
    reset_plugin_manager()
    try:
        get_plugin_manager().register(_EmailPlugin(), name="email-fixture")
        r = load_router(get_plugin_manager().manifest_paths(), today=lambda: DAY)
        assert [route.capability_id for route in r.routes()] == [
            "email.bill_detection",
            "email.spam_detection",
        ]
        assert r.legacy_routes() == {"/classify": "email.classification"}
    finally:
        reset_plugin_manager()


def test_counted_callers_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    import crank.routing.router as router_module

    monkeypatch.setattr(router_module, "MAX_COUNTED_CALLERS", 2)
    r = split_router(default="spam")
    for caller in ("a", "b", "c", "d", "a"):
        r.resolve("email.classification", {}, caller=caller)
    assert r.deprecated_calls == {
        ("email.classification", "a"): 2,
        ("email.classification", "b"): 1,
        ("email.classification", "other"): 2,
    }
