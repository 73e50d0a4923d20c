"""Round-trip properties of the store over arbitrary text and bytes."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crank.artifacts import FilesystemArtifactStore

if TYPE_CHECKING:
    from pathlib import Path

# pytest's tmp_path is per test, not per example: every example gets its own subfolder.
SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip


@SETTINGS
@given(content=st.text())
def test_any_text_round_trips_exactly(
    tmp_path: Path, metadata: dict[str, Any], content: str
) -> None:
    store = FilesystemArtifactStore(tmp_path / uuid.uuid4().hex)
    ref = store.put(content, metadata)
    assert store.get(ref.id).content == content
    assert store.verify(ref.id).ok


@SETTINGS
@given(content=st.binary(), parameters=st.dictionaries(st.text(min_size=1), st.integers()))
def test_any_bytes_and_parameters_round_trip_exactly(
    tmp_path: Path, metadata: dict[str, Any], content: bytes, parameters: dict[str, int]
) -> None:
    store = FilesystemArtifactStore(tmp_path / uuid.uuid4().hex)
    meta = {**metadata, "parameters": parameters}
    ref = store.put(content, meta)
    artifact = store.get(ref.id)
    assert artifact.content == content
    assert artifact.metadata["parameters"] == parameters
