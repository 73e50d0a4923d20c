"""Fixtures of the image-classifier tests: a private model cache, a started worker."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

    from crank.testing import WorkerHandle, WorkerRunner

MANIFEST = Path(__file__).parents[1] / "src" / "crank_image_classifier" / "crank.yaml"


@pytest.fixture(scope="session", autouse=True)
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Train once per test session into a private cache (never the user's)."""
    path = tmp_path_factory.mktemp("models")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CRANK_MODEL_DIR", str(path))
        mp.delenv("CRANK_ONNX_PROVIDERS", raising=False)
        from crank_image_classifier.model import ensure_model

        ensure_model()
        yield path


@pytest.fixture
def worker(crank_worker: WorkerRunner) -> WorkerHandle:
    return crank_worker(MANIFEST)
