"""Fixtures of the text-streamer tests."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from crank.testing import WorkerHandle, WorkerRunner

MANIFEST = Path(__file__).parents[1] / "src" / "crank_text_streamer" / "crank.yaml"


@pytest.fixture
def worker(crank_worker: WorkerRunner, monkeypatch: pytest.MonkeyPatch) -> WorkerHandle:
    monkeypatch.setenv("CRANK_STREAM_MAX_CONNECTIONS", "3")
    return crank_worker(MANIFEST)


@pytest.fixture
def manifest_path() -> Path:
    return MANIFEST
