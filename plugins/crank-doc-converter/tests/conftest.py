"""Fixtures of the doc-converter tests: a worker writing into a private artifact store."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from crank.artifacts import FilesystemArtifactStore
from crank.manifest import Manifest, load_manifest

if TYPE_CHECKING:
    from crank.testing import WorkerHandle, WorkerRunner

MANIFEST = Path(__file__).parents[1] / "src" / "crank_doc_converter" / "crank.yaml"


@pytest.fixture(scope="session")
def manifest() -> Manifest:
    return load_manifest(MANIFEST)


@pytest.fixture
def artifact_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "artifacts"
    monkeypatch.setenv("CRANK_ARTIFACT_DIR", str(root))
    return root


@pytest.fixture
def worker(crank_worker: WorkerRunner, artifact_dir: Path) -> WorkerHandle:
    return crank_worker(MANIFEST)


@pytest.fixture
def store(artifact_dir: Path) -> FilesystemArtifactStore:
    return FilesystemArtifactStore(artifact_dir)
