"""The jsonschema-free fast path may say "don't know", but its "yes" is never wrong."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from crank.manifest.quickcheck import conforms, is_plain_valid_schema
from crank.manifest.validate import manifest_schema

from .conftest import VALID

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 200),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.sampled_from(
        [
            "",
            "x",
            "Worker",
            "crank.dev/v1",
            "1.0.0",
            "a.b",
            "2027-03-31",
            "2027-02-30",
            "none",
            "gpu",
            "A_B",
            "/route",
            "500m",
            "1Gi",
        ]
    ),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(
            st.sampled_from(["id", "name", "type", "x", "version", "input"]), inner, max_size=3
        ),
    ),
    max_leaves=8,
)


def valid_manifest() -> dict[str, Any]:
    import yaml

    data: dict[str, Any] = yaml.safe_load(VALID)
    data["deprecated"] = [
        {"id": "email.old", "replaced_by": ["email.spam_detection"], "sunset": "2030-01-01"}
    ]
    data["worker"]["scaling"] = {"min_workers": 1, "max_workers": 3}
    return data


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += paths(v, (*prefix, i))
    return out


@st.composite
def mutated_manifests(draw: st.DrawFn) -> dict[str, Any]:
    data = valid_manifest()
    for _ in range(draw(st.integers(1, 3))):
        target = draw(st.sampled_from(paths(data)[1:]))
        parent: Any = data
        for part in target[:-1]:
            parent = parent[part]
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "delete":
            del parent[target[-1]]
        elif action == "add" and isinstance(parent, dict):
            parent[draw(st.sampled_from(["extra", "id", "kind", "shim", "gpu"]))] = draw(
                json_values
            )
        else:
            parent[target[-1]] = draw(json_values)
    return data


def test_the_valid_manifest_is_recognised() -> None:
    assert conforms(valid_manifest(), manifest_schema()) is True


@pytest.mark.slow
@SETTINGS
@given(mutated_manifests())
def test_a_yes_for_a_manifest_is_never_wrong(data: dict[str, Any]) -> None:
    if conforms(copy.deepcopy(data), manifest_schema()):
        validator = Draft202012Validator(
            manifest_schema(), format_checker=Draft202012Validator.FORMAT_CHECKER
        )
        assert list(validator.iter_errors(data)) == []


keyword_values = st.fixed_dictionaries(
    {},
    optional={
        "type": st.one_of(
            st.sampled_from(
                [
                    "object",
                    "array",
                    "string",
                    "integer",
                    "number",
                    "boolean",
                    "null",
                    "strng",
                    "int",
                ]
            ),
            st.lists(st.sampled_from(["string", "null", "integer", "bogus"]), max_size=3),
            st.integers(),
        ),
        "required": st.one_of(
            st.lists(st.sampled_from(["a", "b", 1]), max_size=3), st.text(max_size=2)
        ),
        "minimum": st.one_of(st.integers(), st.booleans(), st.text(max_size=1)),
        "maxLength": st.one_of(st.integers(-2, 5), st.floats(0, 3), st.booleans()),
        "pattern": st.sampled_from(["^a", "[", "(?P<x>a)", "\\d+", 3]),
        "enum": st.one_of(st.lists(scalars, max_size=3), scalars),
        "uniqueItems": st.one_of(st.booleans(), st.integers(0, 1)),
        "format": st.one_of(st.sampled_from(["date", "email"]), st.integers()),
        "description": st.one_of(st.text(max_size=3), st.integers()),
        "$ref": st.just("#/nowhere"),
    },
)
schemas = st.recursive(
    keyword_values,
    lambda inner: st.one_of(
        st.builds(
            lambda base, props: {**base, "properties": props},
            keyword_values,
            st.dictionaries(
                st.sampled_from(["a", "b"]),
                st.one_of(inner, st.booleans(), st.integers()),
                max_size=2,
            ),
        ),
        st.builds(
            lambda base, items: {**base, "items": items},
            keyword_values,
            st.one_of(inner, st.lists(inner, max_size=1)),
        ),
        st.builds(
            lambda base, extra: {**base, "additionalProperties": extra},
            keyword_values,
            st.one_of(inner, st.booleans()),
        ),
        st.builds(
            lambda base, key, subs: {**base, key: subs},
            keyword_values,
            st.sampled_from(["allOf", "anyOf", "oneOf", "not"]),
            st.one_of(inner, st.booleans(), st.lists(inner, max_size=2), st.integers()),
        ),
    ),
    max_leaves=6,
)


@pytest.mark.slow
@SETTINGS
@given(schemas)
def test_a_yes_for_a_schema_is_never_wrong(schema: dict[str, Any]) -> None:
    if is_plain_valid_schema(schema):
        Draft202012Validator.check_schema(schema)


@pytest.mark.slow
@SETTINGS
@given(schemas, json_values)
def test_a_yes_for_an_instance_is_never_wrong(schema: dict[str, Any], instance: Any) -> None:
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError:
        return
    if conforms(instance, schema):
        assert list(Draft202012Validator(schema).iter_errors(instance)) == []


@pytest.mark.parametrize("key", ["allOf", "anyOf", "oneOf"])
def test_a_list_of_plain_schemas_is_plain_and_an_empty_one_is_not(key: str) -> None:
    """The example streaming worker's output (a oneOf of events) needs no jsonschema."""
    assert is_plain_valid_schema({key: [{"type": "string"}, {"type": "object"}]})
    assert not is_plain_valid_schema({key: []})
    assert not is_plain_valid_schema({key: [{"pattern": "\\p{L}"}]})


@pytest.mark.parametrize(
    ("schema", "instance"),
    [
        ({"type": "integer"}, 1.0),  # jsonschema calls 1.0 an integer: left to it
        ({"const": 1}, 1),  # numbers compare by value and type rules: left to it
        ({"format": "uri"}, "not a uri"),  # depends on optional libraries
        ({"type": "string", "unknownKeyword": 1}, "x"),
        ({"format": "date"}, "2027-02-30"),
    ],
)
def test_undecided_cases_are_left_to_jsonschema(schema: dict[str, Any], instance: Any) -> None:
    assert conforms(instance, schema) is None
