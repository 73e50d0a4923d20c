"""The worker's own tests, written with crank's pytest plugin (the crank_worker fixture)."""

from __future__ import annotations

from pathlib import Path

import pytest
from crank.errors import ValidationFailed
from crank.manifest import load_manifest

import {{ cookiecutter.package_name }}

MANIFEST_PATH = Path({{ cookiecutter.package_name }}.__file__).parent / "crank.yaml"
MANIFEST = load_manifest(MANIFEST_PATH)
EXAMPLES = [
    pytest.param(cap.id, example.input, example.output, id=f"{cap.id}:{example.name}")
    for cap in MANIFEST.capabilities
    for example in cap.examples
]


@pytest.fixture
def worker(crank_worker):
    """The worker started in-process from its manifest, stopped after the test."""
    return crank_worker(MANIFEST_PATH)


@pytest.mark.parametrize(("capability_id", "data", "expected"), EXAMPLES)
def test_examples(worker, capability_id, data, expected):
    assert worker.call(capability_id, data) == expected


@pytest.mark.parametrize("capability_id", MANIFEST.capability_ids)
def test_rejects_input_without_text(worker, capability_id):
    with pytest.raises(ValidationFailed):
        worker.call(capability_id, {})


def test_live_and_ready(worker):
    assert worker.live()
    assert worker.ready()
