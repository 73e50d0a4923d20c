"""Schema comparison: what narrows input and what breaks output."""

from __future__ import annotations

from typing import Any

import pytest

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
        ({"enum": ["a"]}, {"type": "string"}, [("enum_added", "$")]),
        (
            {"type": "array", "items": {"type": "string"}},
            {"type": "array", "items": {"type": ["string", "null"]}},
            [("type_changed", "$[*]")],
        ),
    ],
)
def test_output_breaks(old: Any, new: Any, expected: list[tuple[str, str]]) -> None:
    assert kinds(output_breaks(old, new)) == expected


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
