from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from crank.errors import ValidationFailed
from crank.worker import TaskContext

if TYPE_CHECKING:
    from pathlib import Path

    from crank.testing import WorkerHandle, WorkerRunner

TEXT = "Streams matter. Each token should arrive as soon as it exists! Don't wait"


def test_words_stream_as_events_then_done(worker: WorkerHandle) -> None:
    emitted: list[dict[str, Any]] = []
    ctx = TaskContext.for_call("text.tokens", 10, event_sink=emitted.append)
    events = worker.call("text.tokens", {"text": TEXT}, ctx)
    assert emitted == events  # each event went through ctx.emit, in order
    tokens = [e["token"] for e in events if e["type"] == "token"]
    assert tokens[:3] == ["Streams", "matter", "Each"]
    assert tokens[-2:] == ["Don't", "wait"]
    assert events[-1] == {"type": "done", "count": len(tokens), "unit": "word"}
    for event in events[:-1]:
        assert TEXT[event["start"] : event["end"]] == event["token"]


def test_sentences(worker: WorkerHandle) -> None:
    events = worker.call("text.tokens", {"text": TEXT, "unit": "sentence"})
    assert [e.get("token") for e in events] == [
        "Streams matter.",
        "Each token should arrive as soon as it exists!",
        "Don't wait",
        None,
    ]


def test_bad_unit_is_refused_by_the_schema(worker: WorkerHandle) -> None:
    with pytest.raises(ValidationFailed, match=r"\$\.unit"):
        worker.call("text.tokens", {"text": TEXT, "unit": "paragraph"})


def test_the_shipped_limit_is_the_manifests_max_concurrency(
    crank_worker: WorkerRunner, manifest_path: Path
) -> None:
    shipped = crank_worker(manifest_path)
    assert shipped.app.admission.max_streams == 32  # type: ignore[attr-defined]
