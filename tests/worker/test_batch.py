"""Batch handlers through WorkerHost: one call per batch, per-item outcomes, misfits."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import pytest

from crank.errors import ValidationFailed, WorkerError
from crank.manifest import manifest_from_dict
from crank.worker import BatchItem, CapabilityError, TaskCancelled, TaskContext, WorkerApplication
from crank.worker import capability as handler
from crank.worker.host import OutputInvalid, WorkerHost

from .conftest import WORKERS

if TYPE_CHECKING:
    from collections.abc import Iterator

    from crank.manifest import Manifest


@pytest.fixture
def batch_host() -> Iterator[WorkerHost]:
    from crank.manifest import load_manifest

    host = WorkerHost(load_manifest(WORKERS / "crank_fixture_batch" / "crank.yaml"))
    yield host
    host.stop()


def ctx_for(capability: str, task_id: str, **kw: Any) -> TaskContext:
    return TaskContext(capability=capability, task_id=task_id, **kw)


def test_one_call_answers_each_item_with_its_own_context(batch_host: WorkerHost) -> None:
    items = [
        ({"n": n}, ctx_for("batch.square", f"t{n}", extras={"caller": f"c{n}"})) for n in (1, 2, 3)
    ]
    outcomes = batch_host.call_batch("batch.square", items)
    assert outcomes == [
        {"square": n * n, "batch_size": 3, "task_id": f"t{n}", "caller": f"c{n}"} for n in (1, 2, 3)
    ]


def test_a_per_item_error_fails_that_item_only(batch_host: WorkerHost) -> None:
    outcomes = batch_host.call_batch(
        "batch.square", [({"n": 2}, None), ({"n": -1}, None), ({"n": 3}, None)]
    )
    assert outcomes[0]["square"] == 4
    assert outcomes[2]["square"] == 9
    error = outcomes[1]
    assert isinstance(error, CapabilityError)
    assert (error.code, error.message, error.retryable) == ("NEGATIVE", "-1 is negative", False)
    # the batch handler still saw all three items (the error is the handler's answer)
    assert outcomes[0]["batch_size"] == 3


def test_invalid_input_fails_alone_and_is_not_handed_to_the_handler(
    batch_host: WorkerHost,
) -> None:
    outcomes = batch_host.call_batch(
        "batch.square", [({"n": 2}, None), ({"n": "two"}, None), ({"m": 1}, None)]
    )
    assert outcomes[0] == {"square": 4, "batch_size": 1, "task_id": outcomes[0]["task_id"],
                           "caller": None}  # fmt: skip
    for bad in outcomes[1:]:
        assert isinstance(bad, ValidationFailed)
    assert '"two" is not of type "number"' in outcomes[1].message
    assert '"n" is a required property' in outcomes[2].message


def test_a_handler_that_raises_fails_every_item_with_that_error(batch_host: WorkerHost) -> None:
    outcomes = batch_host.call_batch(
        "batch.square", [({"n": 1}, None), ({"n": 2, "explode": True}, None)]
    )
    assert len(outcomes) == 2
    for outcome in outcomes:
        assert isinstance(outcome, CapabilityError)
        # the manifest's retryable flag is filled in: each item is retried as usual
        assert (outcome.code, outcome.retryable) == ("BUSY", True)


def test_an_output_that_breaks_the_schema_fails_that_item(batch_host: WorkerHost) -> None:
    outcomes = batch_host.call_batch(
        "batch.square", [({"n": 1, "bad_output": True}, None), ({"n": 2}, None)]
    )
    assert isinstance(outcomes[0], OutputInvalid)
    assert "$.square" in outcomes[0].message
    assert outcomes[1]["square"] == 4


def test_a_list_of_the_wrong_length_fails_the_batch_naming_both_counts(
    batch_host: WorkerHost,
) -> None:
    outcomes = batch_host.call_batch("batch.short", [({}, None), ({}, None), ({}, None)])
    assert len(outcomes) == 3
    for outcome in outcomes:
        assert isinstance(outcome, OutputInvalid)
        assert outcome.message == (
            "worker 'batch-kinds': the batch handler of batch.short returned 2 outputs for 3 inputs"
        )


def test_an_item_past_its_deadline_is_not_run(batch_host: WorkerHost) -> None:
    late = ctx_for("batch.square", "late", deadline=time.monotonic() - 1)
    outcomes = batch_host.call_batch("batch.square", [({"n": 1}, late), ({"n": 2}, None)])
    assert isinstance(outcomes[0], TaskCancelled)
    assert "late" in outcomes[0].message
    assert outcomes[1] == {"square": 4, "batch_size": 1, "task_id": outcomes[1]["task_id"],
                           "caller": None}  # fmt: skip


def test_call_on_a_batch_capability_is_a_batch_of_one(batch_host: WorkerHost) -> None:
    assert batch_host.call("batch.square", {"n": 5})["batch_size"] == 1
    with pytest.raises(CapabilityError) as info:
        batch_host.call("batch.square", {"n": -5})
    assert info.value.code == "NEGATIVE"
    with pytest.raises(ValidationFailed):
        batch_host.call("batch.square", {"n": "five"})


def test_async_batch_handler_runs_on_the_callers_loop(batch_host: WorkerHost) -> None:
    async def run() -> list[Any]:
        return await batch_host.acall_batch(
            "batch.async_square", [({"n": 2}, None), ({"n": 3}, None)]
        )

    assert asyncio.run(run()) == [{"square": 4, "batch_size": 2}, {"square": 9, "batch_size": 2}]
    assert batch_host.call("batch.async_square", {"n": 4}) == {"square": 16, "batch_size": 1}


def test_async_batch_is_cancelled_when_its_last_deadline_passes(batch_host: WorkerHost) -> None:
    soon = time.monotonic() + 0.2
    items = [
        ({"n": 1, "sleep_s": 60}, ctx_for("batch.async_square", "a", deadline=soon)),
        ({"n": 2, "sleep_s": 60}, ctx_for("batch.async_square", "b", deadline=soon + 0.1)),
    ]
    started = time.monotonic()
    outcomes = batch_host.call_batch("batch.async_square", items)
    assert time.monotonic() - started < 30  # cancelled, far from the handler's 60 s sleep
    assert all(isinstance(o, TaskCancelled) for o in outcomes)


# -- misfits between the manifest and the handlers -------------------------------------


def manifest(**capability: Any) -> Manifest:
    cap = {"id": "a.b", "version": "1.0.0", "input": {}, "output": {}, **capability}
    return manifest_from_dict(
        {
            "apiVersion": "crank.dev/v1",
            "kind": "Worker",
            "metadata": {"name": "misfit", "version": "1.0.0"},
            "worker": {"entrypoint": "x:Y"},
            "capabilities": [cap],
        }
    )


class OneAtATime(WorkerApplication):
    @handler("a.b")
    def one(self, data: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        return {}


class Batched(WorkerApplication):
    @handler("a.b", batch=True)
    def many(self, items: list[BatchItem]) -> list[Any]:
        return [{} for _ in items]


class BatchedWithTwoArgs(WorkerApplication):
    @handler("a.b", batch=True)
    def many(self, data: dict[str, Any], ctx: TaskContext) -> list[Any]:
        return []


class AsyncOne(WorkerApplication):
    @handler("a.b")
    async def one(self, data: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        return {}


BATCHING = {"max_batch_size": 4, "max_latency_ms": 5}


@pytest.mark.parametrize(
    ("app", "capability", "message"),
    [
        (
            OneAtATime(),
            {"batching": BATCHING},
            "a.b declares batching but its handler OneAtATime.one takes one input",
        ),
        (Batched(), {}, "Batched.many is a batch handler but a.b declares no batching"),
        (
            BatchedWithTwoArgs(),
            {"batching": BATCHING},
            "batch handler BatchedWithTwoArgs.many takes 2 arguments; it is called with one",
        ),
        (
            OneAtATime(),
            {"concurrency": 4},
            "a.b declares concurrency: 4 but its handler OneAtATime.one is not async",
        ),
        (
            AsyncOne(),
            {"streaming": True, "concurrency": 4},
            "a.b is streaming and declares concurrency",
        ),
    ],
)
def test_a_handler_that_does_not_fit_its_capability_is_refused(
    app: WorkerApplication, capability: dict[str, Any], message: str
) -> None:
    with pytest.raises(WorkerError) as info:
        WorkerHost(manifest(**capability), app)
    assert message in info.value.message
    assert info.value.hint


@pytest.mark.parametrize(
    ("app", "capability"),
    [
        (Batched(), {"batching": BATCHING}),
        (AsyncOne(), {"concurrency": 50}),
        (OneAtATime(), {"concurrency": 1}),
    ],
)
def test_handlers_that_fit_are_accepted(app: WorkerApplication, capability: dict[str, Any]) -> None:
    host = WorkerHost(manifest(**capability), app)
    assert host.call("a.b", {}) == {}
    host.stop()
