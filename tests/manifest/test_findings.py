"""How findings quote the values they name."""

from __future__ import annotations

from typing import Any

import pytest

from crank.manifest.findings import json_quoted, quoted


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
