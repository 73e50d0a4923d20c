from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from crank.artifacts import FilesystemArtifactStore, build_metadata

if TYPE_CHECKING:
    from pathlib import Path


@pytest.fixture
def store(tmp_path: Path) -> FilesystemArtifactStore:
    return FilesystemArtifactStore(tmp_path / "artifacts")


@pytest.fixture
def metadata() -> dict[str, Any]:
    return build_metadata(
        source_format="markdown",
        target_format="html",
        original=b"# Title\n",
        worker_name="doc-converter",
        worker_version="1.0.0",
        capability="document.convert",
        parameters={"to": "html", "standalone": False},
        created_at="2026-11-22T09:30:00Z",
    )
