"""compare_manifests: the Python API the migration-checklist generator consumes."""

from __future__ import annotations

import datetime as dt
from typing import Any

from crank.manifest import Manifest, manifest_from_dict
from crank.routing.compat import compare_manifests

TODAY = dt.date(2026, 11, 22)
TEXT_IN = {"type": "object", "required": ["text"], "properties": {"text": {"type": "string"}}}
OUT = {"type": "object"}


def cap(cid: str, version: str = "1.0.0", inp: Any = TEXT_IN, out: Any = OUT) -> dict[str, Any]:
    return {"id": cid, "version": version, "input": inp, "output": out}


def manifest(
    caps: list[dict[str, Any]], deprecated: list[dict[str, Any]] | None = None
) -> Manifest:
    return manifest_from_dict(
        {
            "apiVersion": "crank.dev/v1",
            "kind": "Worker",
            "metadata": {"name": "w", "version": "1.0.0"},
            "worker": {"entrypoint": "w:W"},
            "capabilities": caps,
            "deprecated": [{"sunset": "2027-06-30", **d} for d in deprecated or []],
        }
    )


def rules(old: Manifest, new: Manifest, **kw: Any) -> list[tuple[str, str]]:
    report = compare_manifests(old, new, today=TODAY, **kw)
    return [(f.rule, f.finding.message) for f in report.breaking]


def test_identical_manifests_are_compatible() -> None:
    m = manifest([cap("a.b")])
    report = compare_manifests(m, m, today=TODAY)
    assert report.ok and report.breaking == () and report.warnings == ()
    assert report.as_dict()["changes"] == {
        "added": [],
        "removed": [],
        "split": [],
        "renamed": [],
        "merged": [],
        "deprecated": [],
        "changed": [],
    }
    assert report.as_dict()["old"] == {
        "name": "w",
        "version": "1.0.0",
        "path": "<old>",
        "digest": m.digest(),
    }


def test_merge_is_reported_as_merged() -> None:
    old = manifest([cap("doc.to_pdf"), cap("doc.to_html")])
    new = manifest(
        [cap("doc.convert")],
        [
            {"id": "doc.to_pdf", "replaced_by": ["doc.convert"], "deprecated_since": "2026-11-22"},
            {"id": "doc.to_html", "replaced_by": ["doc.convert"], "deprecated_since": "2026-11-22"},
        ],
    )
    report = compare_manifests(old, new, today=TODAY)
    assert report.ok, report.breaking
    assert report.changes["merged"] == [
        {"from": ["doc.to_html", "doc.to_pdf"], "to": "doc.convert"}
    ]
    assert report.changes["renamed"] == []
    assert report.changes["removed"] == ["doc.to_html", "doc.to_pdf"]


def test_shim_must_cover_every_selector_value_old_clients_may_send() -> None:
    old_in = {
        **TEXT_IN,
        "properties": {"text": {"type": "string"}, "type": {"enum": ["spam", "bill", "phishing"]}},
    }
    old = manifest([cap("email.classification", inp=old_in)])
    new = manifest(
        [cap("email.spam"), cap("email.bill")],
        [
            {
                "id": "email.classification",
                "replaced_by": ["email.spam", "email.bill"],
                "shim": {"select_by": "type", "map": {"spam": "email.spam", "bill": "email.bill"}},
            }
        ],
    )
    assert rules(old, new) == [
        (
            "CMP003",
            "old calls to 'email.classification' may omit 'type', and its shim has no default",
        ),
        (
            "CMP003",
            "the shim of 'email.classification' does not route type='phishing', which "
            "old clients may send",
        ),
    ]


def test_a_selector_old_clients_send_as_a_boolean_cannot_be_routed() -> None:
    """The router routes by text values only: old clients sending {"fast": true} got
    400, yet the split was reported compatible."""
    old_in = {**TEXT_IN, "required": ["text", "fast"], "properties": {
        "text": {"type": "string"}, "fast": {"type": "boolean"}}}  # fmt: skip
    old = manifest([cap("a.run", inp=old_in)])
    new = manifest(
        [cap("a.fast"), cap("a.slow")],
        [
            {
                "id": "a.run",
                "replaced_by": ["a.fast", "a.slow"],
                "shim": {"select_by": "fast", "map": {"true": "a.fast", "false": "a.slow"}},
            }
        ],
    )
    assert rules(old, new) == [
        (
            "CMP003",
            "the shim of 'a.run' selects by 'fast', which old clients send as boolean: the "
            "shim routes text values only",
        )
    ]


def test_shim_default_must_be_a_map_key() -> None:
    old = manifest([cap("e.c")])
    new = manifest(
        [cap("e.a")],
        [
            {
                "id": "e.c",
                "replaced_by": ["e.a"],
                "shim": {"select_by": "kind", "map": {"a": "e.a"}, "default": "b"},
            }
        ],
    )
    assert rules(old, new) == [
        ("CMP003", "the shim default 'b' of 'e.c' is not a key of its map (a)"),
    ]


def test_replaced_by_unknown_capability() -> None:
    old = manifest([cap("e.c")])
    new = manifest([cap("e.a")], [{"id": "e.c", "replaced_by": ["e.b"]}])
    assert rules(old, new) == [
        (
            "CMP003",
            "deprecated capability 'e.c' is replaced by 'e.b', which this manifest does "
            "not declare",
        ),
    ]


def test_successor_that_refuses_old_payloads_is_input_narrowing() -> None:
    strict_in = {**TEXT_IN, "required": ["text", "lang"]}
    old = manifest([cap("t.old")])
    new = manifest([cap("t.new", inp=strict_in)], [{"id": "t.old", "replaced_by": ["t.new"]}])
    assert rules(old, new) == [
        (
            "CMP004",
            "calls to deprecated 't.old' routed to 't.new' break: input at $.lang: new "
            "required field",
        ),
    ]


def hints(old: Manifest, new: Manifest) -> list[str | None]:
    return [f.finding.hint for f in compare_manifests(old, new, today=TODAY).breaking]


def test_the_hint_speaks_of_a_selector_only_where_a_shim_drops_one() -> None:
    strict_in = {**TEXT_IN, "required": ["text", "lang"]}
    old = manifest([cap("t.old")])
    renamed = manifest([cap("t.new", inp=strict_in)], [{"id": "t.old", "replaced_by": ["t.new"]}])
    assert hints(old, renamed) == ["make t.new accept every payload t.old accepted"]
    shim = {"select_by": "kind", "map": {"a": "t.new"}}
    split = manifest(
        [cap("t.new", inp=strict_in)], [{"id": "t.old", "replaced_by": ["t.new"], "shim": shim}]
    )
    assert "make t.new accept every payload t.old accepted (minus the selector)" in hints(
        old, split
    )


def test_selector_is_removed_before_comparing_with_the_successor() -> None:
    old_in = {
        "type": "object",
        "required": ["text", "type"],
        "additionalProperties": False,
        "properties": {"text": {"type": "string"}, "type": {"enum": ["a"]}},
    }
    closed = {**TEXT_IN, "additionalProperties": False}
    old = manifest([cap("e.c", inp=old_in)])
    shim = {"select_by": "type", "map": {"a": "e.a"}}
    new = manifest([cap("e.a", inp=closed)], [{"id": "e.c", "replaced_by": ["e.a"], "shim": shim}])
    assert rules(old, new) == []
    kept = manifest(
        [cap("e.a", inp=closed)],
        [{"id": "e.c", "replaced_by": ["e.a"], "shim": {**shim, "keep_selector": True}}],
    )
    assert rules(old, kept) == [
        (
            "CMP004",
            "calls to deprecated 'e.c' routed to 'e.a' break: input at $.type: field no "
            "longer accepted",
        ),
    ]


def test_grace_counts_from_deprecated_since_when_it_is_later_than_today() -> None:
    old = manifest([cap("a.x"), cap("a.y")])
    new = manifest(
        [cap("a.x")], [{"id": "a.y", "replaced_by": ["a.x"], "deprecated_since": "2027-05-01"}]
    )
    assert rules(old, new) == [
        (
            "CMP007",
            "'a.y' gets 60 days of grace (deprecated_since 2027-05-01 to sunset "
            "2027-06-30), fewer than the minimum 90",
        ),
    ]
    assert rules(old, new, min_grace_days=60) == []


def test_grace_that_would_end_after_the_last_date_is_a_finding() -> None:
    # the earliest allowed sunset, 9999-12-01 + 90 days, is no date: OverflowError
    old = manifest([cap("a.x"), cap("a.y")])
    new = manifest(
        [cap("a.x")],
        [
            {
                "id": "a.y",
                "replaced_by": ["a.x"],
                "deprecated_since": "9999-12-01",
                "sunset": "9999-12-31",
            }
        ],
    )
    report = compare_manifests(old, new, today=TODAY)
    assert [(f.rule, f.finding.message, f.finding.hint) for f in report.breaking] == [
        (
            "CMP007",
            "'a.y' gets 30 days of grace (deprecated_since 9999-12-01 to sunset "
            "9999-12-31), fewer than the minimum 90",
            "set deprecated_since earlier",
        ),
    ]


def test_unchanged_old_deprecation_is_not_rechecked_for_grace() -> None:
    dep = [{"id": "a.y", "replaced_by": ["a.x"], "sunset": "2026-12-01"}]
    m = manifest([cap("a.x")], dep)
    assert rules(m, m) == []


def test_retired_deprecation_may_be_removed_after_its_sunset() -> None:
    old = manifest([cap("a.x")], [{"id": "a.y", "replaced_by": ["a.x"], "sunset": "2026-11-21"}])
    new = manifest([cap("a.x")])
    report = compare_manifests(old, new, today=TODAY)
    assert report.ok and report.changes["removed"] == ["a.y"]


def test_major_bump_turns_contract_breaks_into_warnings() -> None:
    old = manifest([cap("a.x", "1.4.0")])
    new = manifest([cap("a.x", "2.0.0", inp={**TEXT_IN, "required": ["text", "n"]})])
    report = compare_manifests(old, new, today=TODAY)
    assert report.ok
    assert [(w.rule, w.finding.severity) for w in report.warnings] == [("CMP004", "warning")]
    assert report.changes["changed"] == [
        {"id": "a.x", "old_version": "1.4.0", "new_version": "2.0.0", "breaking": True}
    ]


SPLIT = {
    "id": "a.old",
    "replaced_by": ["a.fast", "a.slow"],
    "shim": {"select_by": "mode", "map": {"fast": "a.fast", "slow": "a.slow"}, "default": "fast"},
    "legacy_routes": ["/old"],
}


def test_a_kept_deprecation_routes_every_old_call_the_same_way_until_its_sunset() -> None:
    """Dropping a map value, the default or the legacy route of a deprecated entry, or
    renaming its selector, was reported compatible: old clients then got 400, 404, or
    silently another capability's answer."""
    caps = [cap("a.fast"), cap("a.slow")]
    old = manifest(caps, [SPLIT])
    shim = SPLIT["shim"]
    changed = {
        "map value dropped": {**shim, "map": {"fast": "a.fast"}},
        "default dropped": {"select_by": "mode", "map": shim["map"]},
        "default changed": {**shim, "default": "slow"},
        "selector renamed": {**shim, "select_by": "kind"},
    }
    found = {
        name: rules(old, manifest(caps, [{**SPLIT, "shim": new_shim}]))
        for name, new_shim in changed.items()
    }
    assert found == {
        "map value dropped": [
            (
                "CMP003",
                "deprecated capability 'a.old' no longer routes mode='slow' (to a.slow "
                "before): old clients get 400",
            )
        ],
        "default dropped": [
            (
                "CMP003",
                "deprecated capability 'a.old' no longer routes calls without 'mode' (to "
                "a.fast before): old clients get 400",
            )
        ],
        "default changed": [
            (
                "CMP003",
                "deprecated capability 'a.old' now routes calls without 'mode' to a.slow "
                "instead of a.fast: old clients get another capability's answer",
            )
        ],
        "selector renamed": [
            (
                "CMP003",
                "deprecated capability 'a.old' now routes mode='slow' to a.fast instead of "
                "a.slow: old clients get another capability's answer",
            )
        ],
    }
    assert rules(old, manifest(caps, [{**SPLIT, "legacy_routes": []}])) == [
        (
            "CMP002",
            "legacy route /old of deprecated capability 'a.old' was removed before its "
            "sunset (2027-06-30): clients calling it get 404",
        )
    ]
    # a new value or a new spelling of a successor (renamed in turn) strands no one
    wider = {**shim, "map": {**shim["map"], "quick": "a.fast"}, "default": "quick"}
    assert rules(old, manifest(caps, [{**SPLIT, "shim": wider}])) == []
    renamed = {**shim, "map": {"fast": "a.fast", "slow": "a.slower"}}
    assert (
        rules(
            old,
            manifest(
                [cap("a.fast"), cap("a.slower")],
                [
                    {**SPLIT, "shim": renamed},
                    {"id": "a.slow", "replaced_by": ["a.slower"]},
                ],
            ),
        )
        == []
    )
    # after the sunset the old id answers 410 whatever the shim says
    late = compare_manifests(
        old,
        manifest(caps, [{**SPLIT, "shim": changed["default dropped"], "legacy_routes": []}]),
        today=dt.date(2027, 7, 1),
    )
    assert late.breaking == ()


def test_turning_streaming_on_or_off_changes_every_answer() -> None:
    """A streaming capability answers a plain call {"events": [...]}: the flip was
    reported compatible."""
    plain, streaming = cap("a.b"), {**cap("a.b"), "streaming": True}
    assert rules(manifest([plain]), manifest([streaming])) == [
        (
            "CMP005",
            "'a.b' became streaming: a plain call now answers {\"events\": [...]} instead "
            "of one output",
        ),
        (
            "CMP006",
            "'a.b' changed incompatibly but its version went 1.0.0 -> 1.0.0 without a major bump",
        ),
    ]
    assert [rule for rule, _ in rules(manifest([streaming]), manifest([plain]))] == [
        "CMP005",
        "CMP006",
    ]
    bumped = compare_manifests(
        manifest([plain]), manifest([{**streaming, "version": "2.0.0"}]), today=TODAY
    )
    assert bumped.ok and [f.rule for f in bumped.warnings] == ["CMP005"]


def test_a_lowered_major_version_strands_pinned_clients() -> None:
    """2.3.0 -> 1.0.0 was reported compatible, yet every call to ``a.b@2`` then gets 404."""
    old, new = manifest([cap("a.b", "2.3.0")]), manifest([cap("a.b", "1.0.0")])
    assert rules(old, new) == [
        (
            "CMP006",
            "the major version of 'a.b' went down, 2.3.0 -> 1.0.0: clients pinned to a.b@2 get 404",
        )
    ]
    assert rules(old, manifest([cap("a.b", "2.2.0")])) == []  # pinning is by major only


def test_changing_max_concurrency_is_not_breaking() -> None:
    old = manifest([cap("a.b")])
    for limit in (1, 50):
        new = manifest([{**cap("a.b"), "max_concurrency": limit}])
        assert new.capabilities[0].max_concurrency == limit
        assert compare_manifests(old, new, today=TODAY).ok
        assert compare_manifests(new, old, today=TODAY).ok
