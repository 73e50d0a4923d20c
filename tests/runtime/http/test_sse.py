"""The SSE tail on its own: how a stream ends (timeout, disconnect, a task that is gone)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import TYPE_CHECKING

from crank.runtime.brokers import open_broker
from crank.runtime.brokers.contract import ClaimOptions, TaskSpec
from crank.runtime.http.sse import live_events, look

if TYPE_CHECKING:
    from crank.runtime.brokers.contract import Broker


def _collect(broker: Broker, task_id: str, *, deadline: float, disconnected: bool = False) -> str:
    async def is_disconnected() -> bool:
        return disconnected

    async def run() -> str:
        first = broker.read_events(task_id, 0)
        chunks = [
            chunk
            async for chunk in live_events(
                broker,
                task_id,
                first,
                deadline=deadline,
                timeout_s=1.0,
                is_disconnected=is_disconnected,
            )
        ]
        return b"".join(chunks).decode()

    return asyncio.run(run())


def _running_task(broker: Broker) -> str:
    record = broker.submit(TaskSpec(capability="demo.count", payload={"n": 2}))
    [claim] = broker.claim(ClaimOptions("w1"))
    broker.publish_events(claim.task.id, [{"i": 1}])
    return record.id


def test_a_task_past_its_timeout_ends_the_stream_with_a_timeout_error() -> None:
    broker = open_broker("memory://")
    task_id = _running_task(broker)
    body = _collect(broker, task_id, deadline=time.monotonic())
    frames = body.strip().split("\n\n")
    assert frames[0] == 'id: 1\nevent: message\ndata: {"i": 1}'
    assert frames[1].startswith("event: error\ndata: ")
    error = json.loads(frames[1].split("data: ", 1)[1])
    assert (error["code"], error["id"]) == ("TIMEOUT", task_id)
    assert f"/v1/tasks/{task_id}" in error["hint"]
    assert len(frames) == 2


def test_a_disconnected_client_ends_the_stream_without_an_end_frame() -> None:
    broker = open_broker("memory://")
    task_id = _running_task(broker)
    body = _collect(broker, task_id, deadline=time.monotonic() + 30, disconnected=True)
    assert body == 'id: 1\nevent: message\ndata: {"i": 1}\n\n'


def test_a_task_that_is_gone_ends_the_stream_with_an_error() -> None:
    broker = open_broker("memory://")
    broker.publish_events("unknown", [{"i": 1}])
    body = _collect(broker, "unknown", deadline=time.monotonic() + 30)
    last = body.strip().split("\n\n")[-1]
    assert last.startswith("event: error\n")
    assert json.loads(last.split("data: ", 1)[1])["code"] == "TASK_NOT_FOUND"


def test_look_reads_the_events_published_before_the_ack_after_seeing_the_task_done() -> None:
    broker = open_broker("memory://")
    record = broker.submit(TaskSpec(capability="demo.count", payload={"n": 2}))
    [claim] = broker.claim(ClaimOptions("w1"))
    broker.publish_events(record.id, [{"i": 1}, {"i": 2}])
    broker.ack(claim, [{"i": 1}, {"i": 2}])
    found = look(broker, record.id, 1)
    assert (found.events, found.finished) == ([(2, {"i": 2})], False)
    found = look(broker, record.id, 2)
    assert found.events == []
    assert found.finished
    assert found.record is not None
    assert found.record.status == "succeeded"
