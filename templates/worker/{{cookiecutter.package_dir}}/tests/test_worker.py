"""The worker's own tests: every manifest example, input validation, health."""

from __future__ import annotations

from pathlib import Path

import pytest

import {{ cookiecutter.package_name }}
from crank.errors import ValidationFailed
from crank.manifest import load_manifest
from crank.worker.host import WorkerHost

MANIFEST = load_manifest(Path({{ cookiecutter.package_name }}.__file__).parent / "crank.yaml")
EXAMPLES = [
    pytest.param(cap.id, example.input, example.output, id=f"{cap.id}:{example.name}")
    for cap in MANIFEST.capabilities
    for example in cap.examples
]


@pytest.fixture
def host():
    worker = WorkerHost(MANIFEST)
    worker.start()
    yield worker
    worker.stop()


@pytest.mark.parametrize(("capability_id", "data", "expected"), EXAMPLES)
def test_examples(host, capability_id, data, expected):
    assert host.call(capability_id, data) == expected


@pytest.mark.parametrize("capability_id", MANIFEST.capability_ids)
def test_rejects_input_without_text(host, capability_id):
    with pytest.raises(ValidationFailed):
        host.call(capability_id, {})


def test_live_and_ready(host):
    assert host.live()
    assert host.ready()
