from __future__ import annotations

from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
WORKERS = FIXTURES / "workers"
COMPAT = FIXTURES / "compat"


@pytest.fixture(autouse=True)
def fixture_workers_importable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(WORKERS))
