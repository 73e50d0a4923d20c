"""WorkerHost: sync, async and streaming handlers, validation, lifecycle, cancellation."""

from __future__ import annotations

import asyncio
import math
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

import pytest

from crank.errors import ValidationFailed
from crank.manifest import load_manifest
from crank.worker import TaskCancelled, TaskContext
from crank.worker.host import OutputInvalid, WorkerHost

if TYPE_CHECKING:
    from pathlib import Path

    from crank.manifest import Manifest


def test_sync_handler_gets_validated_input_and_context(kinds_host: WorkerHost) -> None:
    progress: list[tuple[float, str]] = []
    ctx = TaskContext(
        capability="text.upper",
        attempt=2,
        max_attempts=3,
        progress_sink=lambda f, m: progress.append((f, m)),
    )
    assert kinds_host.call("text.upper", {"text": "abc"}, ctx) == {"upper": "ABC", "attempt": 2}
    assert progress == [(1.0, "done")]


def test_async_handler_runs_from_sync_call(kinds_host: WorkerHost) -> None:
    assert kinds_host.call("text.reverse", {"text": "abc"}) == {"reversed": "cba"}


def test_async_handler_runs_on_the_callers_loop(kinds_host: WorkerHost) -> None:
    async def both() -> list[Any]:
        return list(
            await asyncio.gather(
                kinds_host.acall("text.reverse", {"text": "ab"}),
                kinds_host.acall("text.upper", {"text": "ab"}),
            )
        )

    assert asyncio.run(both()) == [{"reversed": "ba"}, {"upper": "AB", "attempt": 1}]


def test_generator_handler_streams_each_event(kinds_host: WorkerHost) -> None:
    seen: list[Any] = []
    ctx = TaskContext(capability="text.words", event_sink=seen.append)
    events = kinds_host.call("text.words", {"text": "two words"}, ctx)
    assert events == [{"index": 0, "word": "two"}, {"index": 1, "word": "words"}]
    assert seen == events


def test_async_generator_handler_streams_each_event(kinds_host: WorkerHost) -> None:
    seen: list[Any] = []
    ctx = TaskContext(capability="text.letters", event_sink=seen.append)
    assert kinds_host.call("text.letters", {"text": "hi"}, ctx) == [
        {"letter": "h"},
        {"letter": "i"},
    ]
    assert seen == [{"letter": "h"}, {"letter": "i"}]


def test_input_errors_carry_json_paths(kinds_host: WorkerHost) -> None:
    with pytest.raises(ValidationFailed) as info:
        kinds_host.call("text.upper", {"text": "", "options": {"lang": 3}, "extra": 1})
    assert info.value.errors == [
        {"path": "$", "message": 'Additional properties are not allowed ("extra" was unexpected)'},
        {"path": "$.options.lang", "message": '3 is not of type "string"'},
        {"path": "$.text", "message": '"" should be non-empty'},
    ]
    assert info.value.message == (
        "input for text.upper is invalid: $: Additional properties are not allowed "
        '("extra" was unexpected)'
    )


def test_output_that_breaks_the_schema_is_a_worker_bug(kinds_host: WorkerHost) -> None:
    with pytest.raises(OutputInvalid) as info:
        kinds_host.call("text.upper", {"text": "wrong-output"})
    assert info.value.errors == [{"path": "$.upper", "message": '42 is not of type "string"'}]
    assert "returned invalid output for text.upper: $.upper" in info.value.message


@pytest.mark.parametrize(
    ("output", "path", "shown"),
    [
        ({"slept": math.nan}, "$.slept", "nan"),
        ({"slept": 1.0, "log": [{"at": 0.5}, {"at": -math.inf}]}, "$.log[1].at", "-inf"),
        ({"slept": 1.0, "pair": (1.0, math.inf)}, "$.pair[1]", "inf"),
    ],
)
def test_a_number_json_has_no_form_for_is_invalid_output(
    kinds_host: WorkerHost, output: dict[str, Any], path: str, shown: str
) -> None:
    """JSON Schema's ``number`` takes NaN and infinities; JSON (RFC 8259) has no form for
    them, so no client could read such a result: the handler's bug, named at its path."""
    kinds_host.validate_output("text.slow", {"slept": 1.0, "log": [{"at": 0.5}]})
    with pytest.raises(OutputInvalid) as info:
        kinds_host.validate_output("text.slow", output)
    assert info.value.errors == [{"path": path, "message": f"{shown} is not a JSON number"}]
    assert info.value.message.endswith(f"text.slow: {path}: {shown} is not a JSON number")


def test_lifecycle_setup_readiness_teardown(kinds_manifest: Manifest) -> None:
    host = WorkerHost(kinds_manifest)
    assert host.live() is True
    assert host.ready() is False
    host.start()
    host.start()  # idempotent
    assert host.ready() is True
    host.stop()
    host.stop()
    assert host.app.calls == ["setup", "teardown"]  # type: ignore[attr-defined]


def test_stop_closes_loops_of_every_calling_thread(kinds_host: WorkerHost) -> None:
    results: list[Any] = []
    threads = [
        threading.Thread(
            target=lambda: results.append(kinds_host.call("text.reverse", {"text": "x"}))
        )
        for _ in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [{"reversed": "x"}] * 3
    assert len(kinds_host._runners) == 3
    kinds_host.stop()
    assert kinds_host._runners == []


def test_deadline_cancels_a_running_async_handler(kinds_host: WorkerHost) -> None:
    # the manifest's timeout_s (0.2 s) becomes the deadline of an in-process call
    app: Any = kinds_host.app
    for _ in range(50):
        app.slow_started.clear()
        with pytest.raises(TaskCancelled, match=r"\(text.slow\) was cancelled or timed out"):
            kinds_host.call("text.slow", {"seconds": 30})
        # a stall of 0.2 s before the handler started ends the call before it starts
        # (test_a_task_past_its_deadline_does_not_start): then try again
        if app.slow_started.is_set():
            break
    assert app.slow_started.is_set(), "the handler never started within its 0.2 s"
    assert app.cleaned_up.is_set()


def _cancel_once_running(kinds_host: WorkerHost, ctx: TaskContext) -> threading.Thread:
    app: Any = kinds_host.app
    canceller = threading.Thread(target=lambda: app.slow_started.wait(60) and ctx.cancel())
    canceller.start()
    return canceller


def test_cancel_event_stops_a_running_async_handler(kinds_host: WorkerHost) -> None:
    ctx = TaskContext(capability="text.slow")
    canceller = _cancel_once_running(kinds_host, ctx)
    with pytest.raises(TaskCancelled):
        kinds_host.call("text.slow", {"seconds": 30}, ctx)
    canceller.join()
    assert kinds_host.app.cleaned_up.is_set()  # type: ignore[attr-defined]


def test_cancel_reaches_a_handler_awaited_through_acall(kinds_host: WorkerHost) -> None:
    ctx = TaskContext(capability="text.slow")
    canceller = _cancel_once_running(kinds_host, ctx)

    async def run() -> None:
        await kinds_host.acall("text.slow", {"seconds": 30}, ctx)

    with pytest.raises(TaskCancelled):
        asyncio.run(run())
    canceller.join()
    assert kinds_host.app.cleaned_up.is_set()  # type: ignore[attr-defined]


def test_a_task_past_its_deadline_does_not_start(kinds_host: WorkerHost) -> None:
    ctx = TaskContext(capability="text.upper", deadline=time.monotonic() - 1)
    with pytest.raises(TaskCancelled):
        kinds_host.call("text.upper", {"text": "a"}, ctx)


def test_cancel_between_streamed_events(kinds_host: WorkerHost) -> None:
    ctx = TaskContext(capability="text.words")
    ctx.event_sink = lambda event: ctx.cancel()
    with pytest.raises(TaskCancelled):
        kinds_host.call("text.words", {"text": "a b c"}, ctx)


def test_a_worker_next_to_its_manifest_runs_without_being_installed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "checkout" / "crank_unpackaged_worker"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "worker.py").write_text(
        "from crank.worker import WorkerApplication, capability\n\n\n"
        "class Shouter(WorkerApplication):\n"
        "    @capability('text.shout')\n"
        "    def shout(self, data, ctx):\n"
        "        return {'text': data['text'].upper() + '!'}\n"
    )
    (package / "crank.yaml").write_text(
        "apiVersion: crank.dev/v1\nkind: Worker\n"
        "metadata: {name: shouter, version: 0.1.0}\n"
        "worker: {entrypoint: 'crank_unpackaged_worker.worker:Shouter'}\n"
        "capabilities:\n"
        "  - {id: text.shout, version: 1.0.0, input: {type: object}, output: {type: object}}\n"
    )
    monkeypatch.setattr(sys, "path", list(sys.path))
    try:
        host = WorkerHost(load_manifest(package / "crank.yaml"))
        assert host.call("text.shout", {"text": "hi"}) == {"text": "HI!"}
        host.stop()
        assert sys.path[0] == str(package.parent)
    finally:
        for name in [m for m in sys.modules if m.startswith("crank_unpackaged_worker")]:
            del sys.modules[name]
