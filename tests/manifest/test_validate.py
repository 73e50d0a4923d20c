"""Schema findings: what they say about a value YAML read otherwise than it shows."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import yaml

from crank.manifest.loader import parse_yaml
from crank.manifest.validate import schema_findings

if TYPE_CHECKING:
    from crank.manifest.findings import Finding

from .conftest import VALID


def _findings(extra: str) -> list[Finding]:
    text = VALID.replace("    output:", f"    {extra}\n    output:")
    return [f for f in schema_findings(parse_yaml(text, "crank.yaml")) if f.rule == "CRK002"]


@pytest.mark.parametrize(
    ("written", "instead"),
    [("1e3", "1000"), ("2.5e1", "25"), ("15e-1", "1.5"), ("1.5e3", "1500"), ("1e20", "1.0e+20")],
)
def test_a_number_yaml_reads_as_text_is_named_with_how_to_write_it(
    written: str, instead: str
) -> None:
    """`timeout_s: 1e3` is text to YAML 1.1: "change the value to a number" left the
    author looking at what they took for a number."""
    [finding] = _findings(f"timeout_s: {written}")
    assert finding.message == (
        f'expected number, got a string "{written}" (YAML reads {written} as text, not as a number)'
    )
    assert finding.hint == f"write it as {instead}"
    assert yaml.safe_load(f"v: {instead}")["v"] == float(written)


def test_other_text_where_a_number_is_due_keeps_the_plain_hint() -> None:
    [finding] = _findings("timeout_s: soon")
    assert finding.message == 'expected number, got a string "soon"'
    assert finding.hint == "change the value to a number"
