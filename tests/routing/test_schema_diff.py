"""Schema comparison: what narrows input and what breaks output."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from crank.routing.schema_diff import input_narrowings, output_breaks, without_field


def kinds(changes: list[Any]) -> list[tuple[str, str]]:
    return [(c.kind, c.path) for c in changes]


OBJ = {"type": "object", "properties": {"n": {"type": "number"}, "s": {"type": "string"}}}


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ({"type": "number"}, {"type": "integer"}, [("type_narrowed", "$")]),
        ({"type": "integer"}, {"type": "number"}, []),
        ({"type": ["string", "null"]}, {"type": "string"}, [("type_narrowed", "$")]),
        ({}, {"type": "string"}, [("type_narrowed", "$")]),
        ({"enum": ["a", "b"]}, {"enum": ["a"]}, [("enum_removed", "$")]),
        ({"enum": ["a"]}, {"enum": ["a", "b"]}, []),
        ({"type": "string"}, {"type": "string", "const": "x"}, [("enum_removed", "$")]),
        (OBJ, {**OBJ, "required": ["n"]}, [("required_added", "$.n")]),
        (OBJ, {**OBJ, "additionalProperties": False}, [("additional_properties_tightened", "$")]),
        (
            OBJ,
            {
                "type": "object",
                "properties": {"n": {"type": "number"}},
                "additionalProperties": False,
            },
            [("additional_properties_tightened", "$"), ("property_rejected", "$.s")],
        ),
        (
            {"type": "object", "additionalProperties": {"type": "string"}},
            {"type": "object", "additionalProperties": {"enum": ["x"]}},
            [("enum_removed", "$.*")],
        ),
        (
            {"type": "array", "items": OBJ},
            {"type": "array", "items": {**OBJ, "required": ["s"]}},
            [("required_added", "$[*].s")],
        ),
        (
            {"type": "object", "properties": {"o": OBJ}},
            {
                "type": "object",
                "properties": {"o": {**OBJ, "properties": {"n": {"type": "integer"}}}},
            },
            [("type_narrowed", "$.o.n")],
        ),
        ({"$ref": "#/$defs/a"}, {"$ref": "#/$defs/b"}, [("composition_changed", "$")]),
        (OBJ, {**OBJ, "properties": {**OBJ["properties"], "x": {"type": "string"}}}, []),
        (
            OBJ,
            {"type": "object", "properties": {}, "additionalProperties": {"type": "string"}},
            [("additional_properties_tightened", "$"), ("type_narrowed", "$.n")],
        ),
        # value constraints: each refuses some value the old schema accepted
        ({"type": "integer"}, {"type": "integer", "minimum": 0}, [("constraint_narrowed", "$")]),
        (
            {"type": "integer", "minimum": 0},
            {"type": "integer", "exclusiveMinimum": 0},
            [("constraint_narrowed", "$")],
        ),
        ({"type": "number", "maximum": 9}, {"maximum": 8}, [("constraint_narrowed", "$")]),
        ({"type": "string"}, {"type": "string", "maxLength": 10}, [("constraint_narrowed", "$")]),
        ({"type": "string"}, {"type": "string", "pattern": "^a"}, [("constraint_narrowed", "$")]),
        ({"type": "string"}, {"type": "string", "format": "email"}, [("constraint_narrowed", "$")]),
        ({"type": "array"}, {"type": "array", "minItems": 1}, [("constraint_narrowed", "$")]),
        ({"type": "array"}, {"type": "array", "uniqueItems": True}, [("constraint_narrowed", "$")]),
        (
            {"type": "object"},
            {"type": "object", "maxProperties": 3},
            [("constraint_narrowed", "$")],
        ),
        # ...and these refuse nothing it accepted
        ({"type": "integer", "minimum": 5}, {"type": "integer", "minimum": 0}, []),
        ({"type": "integer", "exclusiveMaximum": 5}, {"type": "integer", "maximum": 5}, []),
        ({"type": "string", "maxLength": 10}, {"type": "string", "maxLength": 20}, []),
        ({"type": "string", "pattern": "^a"}, {"type": "string"}, []),
        ({"type": "string"}, {"type": "string", "format": "int32"}, []),  # checked by no one
    ],
)
def test_input_narrowings(old: Any, new: Any, expected: list[tuple[str, str]]) -> None:
    assert kinds(input_narrowings(old, new)) == expected


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            {**OBJ, "required": ["n", "s"]},
            {**OBJ, "required": ["n"]},
            [("required_removed", "$.s")],
        ),
        ({**OBJ, "required": ["n"]}, {**OBJ, "required": ["n", "s"]}, []),
        ({"type": "integer"}, {"type": "number"}, [("type_changed", "$")]),
        ({"type": "number"}, {"type": "integer"}, []),
        ({"enum": ["a"]}, {"enum": ["a", "b"]}, [("enum_added", "$")]),
        (
            OBJ,
            {"type": "object", "properties": {"n": {"type": "number"}}},
            [("type_changed", "$.s")],
        ),
        (
            {**OBJ, "required": ["s"]},
            {"type": "object"},
            [("required_removed", "$.s"), ("type_changed", "$.n")],
        ),
        (
            {"type": "object", "additionalProperties": {"type": "string"}},
            {"type": "object", "additionalProperties": {"type": ["string", "null"]}},
            [("type_changed", "$.*")],
        ),
        (
            {"type": "object", "additionalProperties": False},
            {"type": "object", "properties": {"x": {"type": "string"}}},
            [],
        ),
        ({"enum": ["a"]}, {"type": "string"}, [("enum_added", "$")]),
        (
            {"type": "array", "items": {"type": "string"}},
            {"type": "array", "items": {"type": ["string", "null"]}},
            [("type_changed", "$[*]")],
        ),
        # a client relying on a bound (a length that fits its column) may now get more
        ({"type": "string", "maxLength": 9}, {"type": "string"}, [("constraint_widened", "$")]),
        (
            {"type": "number", "minimum": 0},
            {"type": "number", "minimum": -1},
            [("constraint_widened", "$")],
        ),
        ({"type": "string", "format": "email"}, {"type": "string"}, [("constraint_widened", "$")]),
        ({"type": "number"}, {"type": "number", "minimum": 0}, []),
        ({"type": "string", "maxLength": 9}, {"type": "string", "maxLength": 5}, []),
    ],
)
def test_output_breaks(old: Any, new: Any, expected: list[tuple[str, str]]) -> None:
    assert kinds(output_breaks(old, new)) == expected


def test_a_tightened_constraint_names_both_values_and_its_keyword() -> None:
    old = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 0}}}
    new = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 1}}}
    (change,) = input_narrowings(old, new)
    assert change.detail == "minimum tightened: minimum: 0 before, minimum: 1 now"
    assert (change.path, change.schema_path) == ("$.n", ("properties", "n", "minimum"))


def test_messages_name_the_types() -> None:
    (change,) = input_narrowings({"type": ["number", "null"]}, {"type": "integer"})
    assert change.detail == "type narrowed from null, number to integer"
    (removed,) = input_narrowings({"enum": ["a", 1]}, {"enum": ["a"]})
    assert removed.detail == "enum value(s) removed: 1"


def test_without_field_drops_the_selector() -> None:
    schema = {
        "type": "object",
        "required": ["text", "type"],
        "properties": {"text": {}, "type": {}},
    }
    assert without_field(schema, "type") == {
        "type": "object",
        "required": ["text"],
        "properties": {"text": {}},
    }
    assert schema["required"] == ["text", "type"]


def test_schema_paths_point_at_the_responsible_keyword() -> None:
    old = {"type": "object", "properties": {"o": {"type": "object", "properties": {"k": {}}}}}
    new = {
        "type": "object",
        "required": ["o"],
        "properties": {
            "o": {"type": "object", "additionalProperties": False, "properties": {}},
        },
    }
    assert [(c.kind, c.schema_path) for c in input_narrowings(old, new, at=("input",))] == [
        ("required_added", ("input", "required", 0)),
        ("additional_properties_tightened", ("input", "properties", "o", "additionalProperties")),
        ("property_rejected", ("input", "properties", "o", "properties")),
    ]
    (broken,) = output_breaks({"type": "integer"}, {"type": ["integer", "string"]})
    assert broken.schema_path == ("type",)


# -- property: within the supported subset, the diff never misses a refused payload ---

FIELDS = ("a", "b", "c")
VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 3), st.sampled_from(["x", "y"]), st.just(1.5)
)
LEAF = st.one_of(
    st.just({}),
    st.sampled_from(["string", "integer", "number", "boolean", "null"]).map(lambda t: {"type": t}),
    st.lists(st.sampled_from(["x", "y", 1, None]), min_size=1, max_size=3, unique=True).map(
        lambda e: {"enum": e}
    ),
)


@st.composite
def object_schemas(draw: st.DrawFn) -> dict[str, Any]:
    props = draw(st.dictionaries(st.sampled_from(FIELDS), LEAF, max_size=3))
    schema: dict[str, Any] = {"type": "object", "properties": props}
    required = draw(st.lists(st.sampled_from(FIELDS), unique=True, max_size=2))
    if required:
        schema["required"] = required
    extra = draw(st.sampled_from([None, False, {"type": "string"}]))
    if extra is not None:
        schema["additionalProperties"] = extra
    return schema


PAYLOADS = st.dictionaries(st.sampled_from((*FIELDS, "z")), VALUES, max_size=4)


@pytest.mark.slow
@settings(max_examples=100, deadline=None)
@given(old=object_schemas(), new=object_schemas(), payload=PAYLOADS)
def test_a_payload_old_accepts_and_new_refuses_is_always_reported(
    old: dict[str, Any], new: dict[str, Any], payload: dict[str, Any]
) -> None:
    # the documented assumption: old clients do not send a field the old schema did not
    # declare but the new one does (adding an optional field is not reported)
    newly_declared = set(new["properties"]) - set(old["properties"])
    assume(not newly_declared & set(payload))
    accepted = Draft202012Validator(old).is_valid(payload)
    refused = not Draft202012Validator(new).is_valid(payload)
    if accepted and refused:
        assert input_narrowings(old, new), (old, new, payload)


@pytest.mark.slow
@settings(max_examples=100, deadline=None)
@given(old=object_schemas(), new=object_schemas(), result=PAYLOADS)
def test_an_output_old_clients_would_not_expect_is_always_reported(
    old: dict[str, Any], new: dict[str, Any], result: dict[str, Any]
) -> None:
    # tolerant readers: a client ignores fields its old schema did not describe
    described = set(old["properties"])
    assume(isinstance(old.get("additionalProperties"), dict) or set(result) <= described)
    produced = Draft202012Validator(new).is_valid(result)
    unexpected = not Draft202012Validator(old).is_valid(result)
    if produced and unexpected:
        assert output_breaks(old, new), (old, new, result)


@settings(max_examples=50, deadline=None)
@given(schema=object_schemas())
def test_an_unchanged_schema_has_no_changes(schema: dict[str, Any]) -> None:
    assert input_narrowings(schema, schema) == []
    assert output_breaks(schema, schema) == []
