"""Loading a manifest for use: what it refuses beyond the manifest schema."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from click.testing import CliRunner

from crank.cli import cli
from crank.errors import ManifestError
from crank.manifest import load_manifest

from .conftest import VALID

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path


def test_a_schema_ref_that_does_not_resolve_is_refused_at_its_line(
    write_manifest: Callable[..., Path],
) -> None:
    """Loaded, the worker answered every call with an internal error from the validator."""
    path = write_manifest(VALID.replace("text: {type: string}", "text: {$ref: text.json}"))
    with pytest.raises(ManifestError) as caught:
        load_manifest(path)
    assert caught.value.message == (
        f"{path}:15:22 CRK107 input schema: $ref 'text.json' points outside the schema (a "
        "file or URL); a capability's schema must be self-contained"
    )
    assert caught.value.hint == (
        "put the schema it names under `$defs` and refer to it as '#/$defs/<name>'"
    )
    result = CliRunner().invoke(cli, ["compat", str(path), str(path)])
    assert result.exit_code == 2
    assert "CRK107 input schema: $ref 'text.json' points outside" in result.stderr


def test_a_schema_ref_within_the_schema_loads(write_manifest: Callable[..., Path]) -> None:
    text = VALID.replace("text: {type: string}", "text: {$ref: '#/$defs/text'}").replace(
        "      required: [text]\n", "      required: [text]\n      $defs: {text: {type: string}}\n"
    )
    manifest = load_manifest(write_manifest(text))
    assert manifest.capabilities[0].input["properties"]["text"] == {"$ref": "#/$defs/text"}
