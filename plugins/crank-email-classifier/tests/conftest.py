"""Fixtures of the email-classifier tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from crank.testing import WorkerHandle, WorkerRunner

from crank.manifest import Manifest, load_manifest

MANIFEST = Path(__file__).parents[1] / "src" / "crank_email_classifier" / "crank.yaml"

#: Realistic emails the model never saw in training: (label, subject, body).
HELD_OUT: list[tuple[str, str, str]] = [
    (e["label"], e["subject"], e["body"])
    for e in map(json.loads, (Path(__file__).parent / "held_out.jsonl").read_text().splitlines())
]


@pytest.fixture(scope="session")
def manifest() -> Manifest:
    return load_manifest(MANIFEST)


@pytest.fixture
def worker(crank_worker: WorkerRunner) -> WorkerHandle:
    return crank_worker(MANIFEST)


@pytest.fixture
def held_out() -> list[tuple[str, str, str]]:
    return HELD_OUT
