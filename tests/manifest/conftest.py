"""A valid manifest to start from, and a factory writing manifests into tmp dirs."""

from __future__ import annotations

import textwrap
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

VALID = """\
apiVersion: crank.dev/v1
kind: Worker
metadata:
  name: email-classifier
  version: 2.1.0
worker:
  entrypoint: crank_email_classifier_not_installed.worker:EmailClassifier
capabilities:
  - id: email.spam_detection
    version: 1.2.0
    input:
      type: object
      required: [text]
      properties:
        text: {type: string}
    output:
      type: object
      properties:
        spam: {type: boolean}
"""


@pytest.fixture
def write_manifest(tmp_path: Path) -> Callable[..., Path]:
    """``write_manifest(text, name="crank.yaml")``: dedented text written to tmp_path."""

    def write(text: str, name: str = "crank.yaml") -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    return write
