"""The compiled fast path may only ever agree with jsonschema, never be more lenient."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from crank.worker.validation import SchemaValidator, error_message, fast_path_applies

EMAIL = {
    "type": "object",
    "properties": {
        "text": {"type": "string", "minLength": 1, "maxLength": 50},
        "type": {"enum": ["spam", "bill", 1]},
        "score": {"type": "number", "minimum": 0, "exclusiveMaximum": 1},
        "count": {"type": "integer", "multipleOf": 2},
        "tags": {
            "type": "array",
            "items": {"type": "string", "pattern": "^[a-z]+$"},
            "uniqueItems": True,
        },
        "flag": {"const": True},
    },
    "required": ["text"],
    "additionalProperties": False,
}
NESTED = {
    "type": "object",
    "properties": {
        "images": {
            "type": "array",
            "minItems": 1,
            "maxItems": 3,
            "items": {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2},
        },
        "mode": {"anyOf": [{"type": "null"}, {"type": "string", "enum": ["a", "b"]}]},
        "opt": {"oneOf": [{"type": "integer"}, {"type": "boolean"}]},
    },
    "patternProperties": {"^x-": {"type": "string"}},
    "propertyNames": {"maxLength": 8},
    "if": {"required": ["mode"]},
    "then": {"required": ["images"]},
}
SCHEMAS = [EMAIL, NESTED, {"type": "object"}, {"not": {"type": "string"}}]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.floats(-2, 2, allow_nan=False)
    | st.sampled_from(["spam", "bill", "abc", "ABC", "", "x" * 60, "a", "b"]),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(
        st.sampled_from(["text", "type", "score", "count", "tags", "flag", "images", "mode",
                         "opt", "x-a", "x-long-name", "other"]),
        children,
        max_size=5,
    ),
    max_leaves=12,
)  # fmt: skip


@pytest.mark.parametrize("schema", SCHEMAS, ids=["email", "nested", "object", "not"])
@settings(max_examples=300, deadline=None)
@given(instance=json_values)
def test_fast_path_agrees_with_jsonschema(schema: dict[str, Any], instance: Any) -> None:
    assert fast_path_applies(schema)
    # worded as jsonschema words it (a long value quoted short, in both)
    full = Draft202012Validator(schema).iter_errors(instance)
    expected = sorted(error_message(e) for e in full)
    got = sorted(e["message"] for e in SchemaValidator(schema).errors(instance))
    assert got == expected


@pytest.mark.parametrize(
    "schema",
    [
        {"$ref": "#/$defs/a", "$defs": {"a": {"type": "string"}}},
        {"type": "string", "format": "date"},
        {"type": "array", "prefixItems": [{"type": "string"}]},
        {"type": "object", "unevaluatedProperties": False},
        {"type": "object", "properties": {"a": {"dependentRequired": {"a": ["b"]}}}},
        {"$schema": "http://json-schema.org/draft-04/schema#", "type": "object"},
        {"anyOf": [{"type": "string", "format": "email"}]},
    ],
)
def test_keywords_with_other_meanings_take_the_jsonschema_path(schema: dict[str, Any]) -> None:
    assert not fast_path_applies(schema)


def test_formats_are_still_checked_without_the_fast_path() -> None:
    validator = SchemaValidator({"type": "object", "properties": {"d": {"format": "date"}}})
    assert validator.errors({"d": "2026-11-22"}) == []
    assert validator.errors({"d": "22/11/2026"}) == [
        {"path": "$.d", "message": '"22/11/2026" is not a valid date'}
    ]


@pytest.mark.parametrize(
    ("fmt", "good", "bad"),
    [
        ("uri", "https://example.com/cat.png", "cat.png"),
        ("uri-reference", "../cat.png", "not a uri %%"),
        ("hostname", "example.com", "not a host"),
        ("date-time", "2026-11-22T10:00:00Z", "2026-11-22 10h"),
        ("duration", "PT5M", "5 minutes"),
        ("json-pointer", "/a/0", "a/0"),
    ],
)
def test_every_common_format_is_checked(fmt: str, good: str, bad: str) -> None:
    """Without jsonschema's format checkers installed these were accepted unchecked."""
    validator = SchemaValidator({"type": "object", "properties": {"v": {"format": fmt}}})
    assert validator.errors({"v": good}) == []
    assert validator.errors({"v": bad}) == [
        {"path": "$.v", "message": f'"{bad}" is not a valid {fmt}'}
    ]


def test_errors_carry_json_paths_from_jsonschema() -> None:
    errors = SchemaValidator(EMAIL).errors({"text": "", "tags": ["ok", "Bad"]})
    assert errors == [
        {"path": "$.tags[1]", "message": '"Bad" does not match "^[a-z]+$"'},
        {"path": "$.text", "message": '"" should be non-empty'},
    ]


def test_a_long_value_is_quoted_short_with_its_length() -> None:
    validator = SchemaValidator({"type": "object", "properties": {"s": {"maxLength": 3}}})
    [error] = validator.errors({"s": "y" * 10_000})
    assert error == {"path": "$.s", "message": f'"{"y" * 40}"... (10000 characters) is too long'}
    [error] = validator.errors({"s": "yyyy"})
    assert error["message"] == '"yyyy" is too long'
    long_list = SchemaValidator({"type": "string"}).errors(list(range(5_000)))
    assert long_list[0]["message"].endswith('characters of JSON) is not of type "string"')
    assert len(long_list[0]["message"]) < 200


def test_past_twenty_problems_the_last_entry_counts_the_rest() -> None:
    validator = SchemaValidator({"type": "array", "items": {"type": "string"}})
    errors = validator.errors(list(range(100)))
    assert len(errors) == 20
    assert errors[-1] == {"path": "$", "message": "and 81 more problems not listed"}


def test_messages_quote_values_as_json_writes_them() -> None:
    """A client in any language reads these: true and null, not Python's True and None."""
    validator = SchemaValidator(
        {
            "type": "object",
            "properties": {
                "flag": {"type": "string"},
                "tag": {"enum": ["a", "b"]},
                "kind": {"const": "x"},
                "nested": {"type": "string"},
            },
            "required": ["need"],
            "additionalProperties": False,
        }
    )
    errors = validator.errors(
        {"flag": True, "tag": None, "kind": "y", "nested": {"a": [1, None]}, "ünï": 1}
    )
    assert errors == [
        {"path": "$", "message": '"need" is a required property'},
        {"path": "$", "message": 'Additional properties are not allowed ("ünï" was unexpected)'},
        {"path": "$.flag", "message": 'true is not of type "string"'},
        {"path": "$.kind", "message": '"x" was expected'},
        {"path": "$.nested", "message": '{"a": [1, null]} is not of type "string"'},
        {"path": "$.tag", "message": 'null is not one of ["a", "b"]'},
    ]


@pytest.mark.parametrize(
    ("keyword", "instance", "message"),
    [
        ("oneOf", {}, 'exactly one of "content", "content_base64" is required'),
        ("oneOf", {"content": "a", "content_base64": "YQ=="}, (
            'only one of "content", "content_base64" may be given'
        )),
        ("anyOf", {}, 'at least one of "content", "content_base64" is required'),
    ],
)  # fmt: skip
def test_one_of_several_fields_is_named_not_quoted_as_subschemas(
    keyword: str, instance: dict[str, str], message: str
) -> None:
    """jsonschema's words quote each subschema ({'required': ['content']}) as Python."""
    alternatives = [{"required": ["content"]}, {"required": ["content_base64"]}]
    validator = SchemaValidator({"type": "object", keyword: alternatives})
    assert validator.errors(instance) == [{"path": "$", "message": message}]
