"""Fixtures of the text-streamer tests."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from crank.testing import WorkerHandle, WorkerRunner

MANIFEST = Path(__file__).parents[1] / "src" / "crank_text_streamer" / "crank.yaml"


@pytest.fixture
def worker(crank_worker: WorkerRunner, tmp_path: Path) -> WorkerHandle:
    """The worker loaded from its manifest with ``max_concurrency: 3`` (32 when shipped)."""
    text = MANIFEST.read_text()
    assert "max_concurrency: 32\n" in text
    manifest = tmp_path / "crank.yaml"
    manifest.write_text(text.replace("max_concurrency: 32\n", "max_concurrency: 3\n"))
    return crank_worker(manifest)


@pytest.fixture
def manifest_path() -> Path:
    return MANIFEST
