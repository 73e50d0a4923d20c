from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from crank.manifest import Manifest, load_manifest
from crank.worker.host import WorkerHost

if TYPE_CHECKING:
    from collections.abc import Iterator

WORKERS = Path(__file__).resolve().parents[1] / "fixtures" / "workers"


@pytest.fixture(autouse=True)
def fixture_workers_importable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(WORKERS))


@pytest.fixture
def kinds_manifest() -> Manifest:
    return load_manifest(WORKERS / "crank_fixture_kinds" / "crank.yaml")


@pytest.fixture
def kinds_host(kinds_manifest: Manifest) -> Iterator[WorkerHost]:
    host = WorkerHost(kinds_manifest)
    yield host
    host.stop()
