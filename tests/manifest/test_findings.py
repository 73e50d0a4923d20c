"""How findings quote the values they name, and how crank reads a JSON input strictly."""

from __future__ import annotations

import json
from typing import Any

import pytest

from crank.manifest.findings import json_quoted, quoted, strict_json


@pytest.mark.parametrize(
    ("value", "python", "json"),
    [
        ("short", "'short'", '"short"'),
        ({"a": None}, "{'a': None}", '{"a": null}'),
        (
            "a" * 100,
            f"'{'a' * 40}'... (100 characters)",
            f'"{"a" * 40}"... (100 characters)',
        ),
        (
            'x"y' * 30,
            "'" + ('x"y' * 14)[:40] + "'... (90 characters)",
            '"' + ('x"y' * 14)[:40].replace('"', '\\"') + '"... (90 characters)',
        ),
        (
            list(range(50)),
            f"{str(list(range(50)))[:40]}... (190 characters as Python shows it)",
            f"{str(list(range(50)))[:40]}... (190 characters of JSON)",
        ),
    ],
)
def test_a_long_value_is_quoted_by_its_first_characters_and_its_length(
    value: Any, python: str, json: str
) -> None:
    assert quoted(value) == python
    assert json_quoted(value) == json


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '{"a": 1, "a": 2}',
            'duplicate key "a" (first at line 1 column 2): line 1 column 10 (char 9)',
        ),
        (
            '{\n  "x": {"b": [1, {"c": 1}], "b": 3}\n}',
            'duplicate key "b" (first at line 2 column 9): line 2 column 29 (char 30)',
        ),
        (  # an escaped key is the same key
            b'{"\\u0061": 1, "a": {"a": 1}}',
            'duplicate key "a" (first at line 1 column 2): line 1 column 15 (char 14)',
        ),
        (
            '[{"k": 1}, {"k": 2, "k": 3}]',
            'duplicate key "k" (first at line 1 column 13): line 1 column 21 (char 20)',
        ),
    ],
)
def test_strict_json_refuses_a_key_given_twice_at_the_second(
    text: str | bytes, message: str
) -> None:
    with pytest.raises(json.JSONDecodeError) as caught:
        strict_json(text)
    assert str(caught.value) == message


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16", "utf-32-le"])
def test_strict_json_reads_bytes_as_json_loads_does(encoding: str) -> None:
    # strict_json decodes bytes itself (its decoders are built once): every encoding
    # json.loads detects, and a key given twice is still found in each
    assert strict_json('{"a": [1, "é"]}'.encode(encoding)) == {"a": [1, "é"]}
    with pytest.raises(json.JSONDecodeError, match='duplicate key "a"'):
        strict_json('{"a": 1, "a": 2}'.encode(encoding))


@pytest.mark.parametrize(
    ("text", "error"),
    [  # bodies without a comma take the path that needs no duplicate check
        ('\ufeff{"a": 1}', "Unexpected UTF-8 BOM"),
        ('{"a": NaN}', "NaN is not a JSON value"),
        ('{"a": 1e999}', "beyond the range of a 64-bit float"),
        ('{"a": 1} x', "Extra data"),
    ],
)
def test_strict_json_refuses_what_json_loads_would_take_or_refuse(text: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        strict_json(text)


def test_strict_json_takes_the_same_key_in_different_objects() -> None:
    assert strict_json('{"a": 1, "b": {"a": 2}, "c": [{"a": 3}]}') == {
        "a": 1,
        "b": {"a": 2},
        "c": [{"a": 3}],
    }
