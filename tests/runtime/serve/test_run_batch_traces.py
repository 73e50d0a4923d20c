"""Traces through a batched capability under ``crank run``: each task of a batch keeps its
own caller's trace (its span ``crank.task <capability>``, a child of its submit span),
and the batch call is one span ``crank.batch <capability>`` linked to each of them.

The spans come from the worker process through the SDK's exporter writing to a file
(``CRANK_TRACES_FILE``), as an operator would look at them. The fixture's batches hold
four tasks and wait a minute for more (tests/fixtures/batching_workers), so which
tasks share a batch does not depend on how fast this machine is.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from collections.abc import Callable

    from .conftest import CrankRun

pytestmark = [
    pytest.mark.slow,
    pytest.mark.requires("opentelemetry.sdk", hint="pip install 'crank-workers[otel]'"),
]

BATCHING = Path(__file__).resolve().parents[2] / "fixtures" / "batching_workers"
#: one caller's trace per task: 4bf9...0001, 4bf9...0002, ...
CALLER_TRACES = [f"4bf92f3577b34da6a3ce929d0e{n:06x}" for n in range(1, 5)]
CALLER_SPAN = "00f067aa0ba902b7"


def batching_run(crank_run: Callable[..., CrankRun], **env: str) -> CrankRun:
    env = {"CRANK_LOG_FORMAT": "json", "OTEL_TRACES_EXPORTER": "", **env}
    return crank_run("--min-workers", "1", "--max-workers", "1", workers=(BATCHING,), env=env)


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def submit_traced(run: CrankRun, capability: str, inputs: list[dict[str, Any]]) -> list[str]:
    """Submit one task per input, each from its own caller's trace; their ids."""
    ids = []
    for trace_id, data in zip(CALLER_TRACES[: len(inputs)], inputs, strict=True):
        answer = run.http.post(
            "/v1/tasks",
            json={"capability": capability, "input": data},
            headers={"traceparent": f"00-{trace_id}-{CALLER_SPAN}-01"},
        )
        assert answer.status_code == 202, answer.text
        ids.append(answer.json()["id"])
    return ids


def batch_spans(
    run: CrankRun, spans_file: Path, capability: str, count: int
) -> tuple[list[dict[str, Any]], dict[str, Any], list[dict[str, Any]]]:
    """(the ``count`` task spans, the batch span, every span), once all are written."""

    def written() -> tuple[list[dict[str, Any]], dict[str, Any], list[dict[str, Any]]] | None:
        spans = json_lines(spans_file.read_text()) if spans_file.exists() else []
        tasks = [s for s in spans if s["name"] == f"crank.task {capability}"]
        batches = [s for s in spans if s["name"] == f"crank.batch {capability}"]
        if len(tasks) < count or not batches:
            return None
        assert (len(tasks), len(batches)) == (count, 1), spans
        return tasks, batches[0], spans

    found = run.wait_until(written, what=f"the spans of a batch of {capability}")
    assert found is not None
    return found


def context_of(span: dict[str, Any]) -> tuple[str, str]:
    return span["context"]["trace_id"], span["context"]["span_id"]


def links_of(span: dict[str, Any]) -> set[tuple[str, str]]:
    return {(link["context"]["trace_id"], link["context"]["span_id"]) for link in span["links"]}


def handler_line(run: CrankRun, size: int) -> dict[str, Any]:
    """The batch handler's own log line (it logs how many numbers it squares)."""
    event = f"squaring {size} numbers"

    def written() -> list[dict[str, Any]]:
        return [line for line in json_lines(run.log()) if line.get("event") == event]

    (line,) = run.wait_until(written, what=f"the handler's line {event!r}")
    return dict(line)


def assert_each_task_continues_its_callers_trace(
    ids: list[str], tasks: list[dict[str, Any]], spans: list[dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """Each task's span is in its own caller's trace, a child of that trace's submit
    span; the task spans by task id."""
    by_task = {s["attributes"]["crank.task_id"]: s for s in tasks}
    assert set(by_task) == set(ids)
    submits = {s["context"]["trace_id"]: s for s in spans if s["name"] == "crank.submit"}
    for task_id, caller in zip(ids, CALLER_TRACES[: len(ids)], strict=True):
        task = by_task[task_id]
        assert task["context"]["trace_id"] == f"0x{caller}"
        assert task["parent_id"] == submits[f"0x{caller}"]["context"]["span_id"]
        assert task["kind"] == "SpanKind.CONSUMER"
    return by_task


def test_each_task_of_a_batch_has_its_span_in_its_callers_trace_and_the_batch_links_them(
    crank_run: Callable[..., CrankRun], tmp_path: Path
) -> None:
    spans_file = tmp_path / "spans.jsonl"
    run = batching_run(crank_run, CRANK_TRACES_FILE=str(spans_file))
    # four tasks, one batch (max_batch_size 4); the third answers a declared error
    ids = submit_traced(
        run, "batching.square", [{"n": 1}, {"n": 2}, {"n": 3, "fail": True}, {"n": 4}]
    )
    results = [run.wait_final(i) for i in ids]
    assert [r["status"] for r in results] == ["succeeded", "succeeded", "failed", "succeeded"]
    assert {r["result"]["batch_size"] for r in results if r["result"]} == {4}

    tasks, batch, spans = batch_spans(run, spans_file, "batching.square", 4)
    by_task = assert_each_task_continues_its_callers_trace(ids, tasks, spans)
    for task_id in ids:
        assert by_task[task_id]["attributes"] == {
            "crank.task_id": task_id,
            "crank.capability": "batching.square",
            "crank.batch.size": 4,
            "crank.batch.release_reason": "full",
        } | ({"error.type": "REFUSED"} if task_id == ids[2] else {})
    statuses = [by_task[i]["status"] for i in ids]
    assert [s["status_code"] for s in statuses] == ["OK", "OK", "ERROR", "OK"]
    assert statuses[2]["description"] == "REFUSED: this item was asked to fail"

    # the batch call: one span in a trace of its own, linked to each task's span, and
    # each task's span linked back to it; written by the worker process
    assert batch["attributes"] == {
        "crank.capability": "batching.square",
        "crank.batch.size": 4,
        "crank.batch.release_reason": "full",
        "crank.batch.failed": 1,
    }
    assert batch["parent_id"] is None
    assert batch["context"]["trace_id"] not in {f"0x{t}" for t in CALLER_TRACES}
    assert links_of(batch) == {context_of(s) for s in tasks}
    assert {link["attributes"]["crank.task_id"] for link in batch["links"]} == set(ids)
    assert all(links_of(s) == {context_of(batch)} for s in tasks)
    assert batch["status"]["status_code"] == "UNSET"
    assert batch["resource"]["attributes"]["process.pid"] in run.workers()
    # every task span covers the batch call
    for task in tasks:
        assert task["start_time"] <= batch["start_time"] <= batch["end_time"] <= task["end_time"]

    # the handler's line: the batch's own trace, and the tasks' ids and traces
    line = handler_line(run, 4)
    assert line["capability"] == "batching.square"
    assert line["task_ids"] == ids
    assert line["trace_ids"] == CALLER_TRACES
    assert f"0x{line['trace_id']}" == batch["context"]["trace_id"]
    assert "task_id" not in line
    assert run.terminate() == 0


def test_a_batch_handler_that_raises_ends_every_tasks_span_in_error(
    crank_run: Callable[..., CrankRun], tmp_path: Path
) -> None:
    spans_file = tmp_path / "spans.jsonl"
    run = batching_run(crank_run, CRANK_TRACES_FILE=str(spans_file))
    # an async batch handler on the task loop (concurrency 2); one item makes it raise
    inputs: list[dict[str, Any]] = [{"n": 1}, {"n": 2, "explode": True}, {"n": 3}, {"n": 4}]
    ids = submit_traced(run, "batching.async_square", inputs)
    assert {run.wait_final(i)["status"] for i in ids} <= {"failed", "dead"}

    tasks, batch, spans = batch_spans(run, spans_file, "batching.async_square", 4)
    by_task = assert_each_task_continues_its_callers_trace(ids, tasks, spans)
    for task_id in ids:
        task = by_task[task_id]
        assert task["status"] == {
            "status_code": "ERROR",
            "description": "INTERNAL: asked to explode",
        }
        assert task["attributes"]["error.type"] == "INTERNAL"
        assert task["attributes"]["crank.batch.size"] == 4
    assert links_of(batch) == {context_of(s) for s in tasks}
    assert batch["attributes"]["crank.batch.failed"] == 4
    assert batch["status"] == {
        "status_code": "ERROR",
        "description": "every task of the batch failed",
    }
    assert run.terminate() == 0


def test_a_concurrent_capabilitys_tasks_each_have_their_span(
    crank_run: Callable[..., CrankRun], tmp_path: Path
) -> None:
    spans_file = tmp_path / "spans.jsonl"
    gate = tmp_path / "gate"
    gate.mkdir()
    (gate / "open").touch()
    # concurrent.gated: an async handler on the task loop (concurrency 50), no batching
    run = batching_run(
        crank_run, CRANK_TRACES_FILE=str(spans_file), CRANK_FIXTURE_GATE_DIR=str(gate)
    )
    ids = submit_traced(run, "concurrent.gated", [{}, {}])
    assert [run.wait_final(i)["status"] for i in ids] == ["succeeded"] * 2

    def task_spans() -> list[dict[str, Any]]:
        spans = json_lines(spans_file.read_text()) if spans_file.exists() else []
        found = [s for s in spans if s["name"] == "crank.task concurrent.gated"]
        return spans if len(found) == 2 else []

    spans = run.wait_until(task_spans, what="the tasks' spans")
    tasks = [s for s in spans if s["name"] == "crank.task concurrent.gated"]
    by_task = assert_each_task_continues_its_callers_trace(ids, tasks, spans)
    assert {s["status"]["status_code"] for s in by_task.values()} == {"OK"}
    assert not [s for s in spans if s["name"].startswith("crank.batch")]
    assert run.terminate() == 0


def test_without_a_tracer_a_batchs_log_lines_carry_its_tasks_ids_and_traces(
    crank_run: Callable[..., CrankRun], tmp_path: Path
) -> None:
    run = batching_run(crank_run, CRANK_TRACES_FILE="")
    ids = submit_traced(run, "batching.square", [{"n": n} for n in range(4)])
    results = [run.wait_final(i) for i in ids]
    assert [r["result"]["square"] for r in results] == [0, 1, 4, 9]
    line = handler_line(run, 4)
    assert line["capability"] == "batching.square"
    assert line["task_ids"] == ids
    # the callers' trace ids still flow, from each task's traceparent
    assert line["trace_ids"] == CALLER_TRACES
    assert "trace_id" not in line  # no span, so no trace of the batch's own
    assert not list(tmp_path.glob("*.jsonl"))
    assert run.terminate() == 0
