"""Loading a manifest for use: what it refuses beyond the manifest schema."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from click.testing import CliRunner

from crank.cli import cli
from crank.errors import ManifestError
from crank.manifest import load_manifest
from crank.manifest.reading import check_replacements, load_servable_manifest

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


SPLIT_WITH_SHIM = """\
  - id: email.bill_detection
    version: 1.0.0
    input: {type: object}
    output: {type: object}
deprecated:
  - id: email.classify
    replaced_by: [email.spam_detection, email.bill_detection]
    shim:
      select_by: type
      map: {spam: email.spam_detection, bill: email.bill_detection}
      default: %s
    sunset: 2099-12-31
"""


def test_a_shim_default_that_is_not_a_key_of_its_map_is_refused_to_serve(
    write_manifest: Callable[..., Path],
) -> None:
    """Served, every call of email.classify without `type` was answered 422 naming a
    value the caller never sent."""
    path = write_manifest(VALID + SPLIT_WITH_SHIM % "ham")
    with pytest.raises(ManifestError) as caught:
        load_servable_manifest(path)
    line = path.read_text().splitlines().index("      default: ham") + 1
    assert caught.value.message == (
        f"{path}:{line}:16 CRK104 deprecated capability 'email.classify': shim default 'ham' "
        "is not a key of shim.map, so a call without 'type' cannot be routed"
    )
    assert caught.value.hint == "use one of: spam, bill"
    assert load_servable_manifest(write_manifest(VALID + SPLIT_WITH_SHIM % "spam")).deprecated


def test_a_shim_map_value_no_worker_declares_is_refused_to_serve(
    write_manifest: Callable[..., Path],
) -> None:
    """Served, every call of email.classify with `type: ham` was answered 404: the shim
    maps it to an id outside replaced_by that nothing serves."""
    text = VALID + (SPLIT_WITH_SHIM % "spam").replace(
        "bill: email.bill_detection}", "bill: email.bill_detection, ham: email.ham}"
    )
    path = write_manifest(text)
    served = [load_servable_manifest(path)]
    with pytest.raises(ManifestError) as caught:
        check_replacements(served, list)
    line = next(n for n, x in enumerate(text.splitlines(), 1) if "ham: email.ham" in x)
    assert caught.value.message == (
        f"{path}:{line}:74 CRK104 deprecated capability 'email.classify': shim maps 'ham' to "
        "'email.ham', which is neither in replaced_by nor a capability of this manifest or of "
        "any installed worker, so a call whose 'type' is 'ham' cannot be routed"
    )
    assert caught.value.hint == "map to one of: email.spam_detection, email.bill_detection"
    # another installed worker serving email.ham makes the call routable
    other = write_manifest(
        VALID.replace("email-classifier", "ham-filter").replace(
            "email.spam_detection", "email.ham"
        ),
        "other/crank.yaml",
    )
    check_replacements(served, lambda: [other])
