"""``crank.AsyncClient`` against a real ``crank run`` (real processes, real HTTP, SQLite)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import pytest

from crank import AsyncClient
from crank.client import (
    ApiError,
    CapabilityDeprecated,
    ClientClosed,
    ClientError,
    RetryPolicy,
    ServerUnreachable,
    TaskEvent,
    TaskFailed,
    TaskNotFound,
    TaskTimeout,
)

from .conftest import free_port

if TYPE_CHECKING:
    from pathlib import Path

    from ..runtime.serve.conftest import CrankRun

pytestmark = pytest.mark.slow


def test_call_submit_result_and_status(server: CrankRun) -> None:
    async def scenario() -> None:
        async with AsyncClient(server.url) as client:
            assert await client.call("demo.echo", {"text": "a"}) == {"text": "a"}
            # many at once over one client
            outputs = await asyncio.gather(
                *(client.call("demo.echo", {"text": str(i)}) for i in range(8))
            )
            assert outputs == [{"text": str(i)} for i in range(8)]
            task = await client.submit("demo.echo", {"text": "queued"})
            assert await task.result(timeout=30) == {"text": "queued"}
            info = await task.status()
            assert (info.status, info.result) == ("succeeded", {"text": "queued"})
            assert await client.task(task.id).result(timeout=5) == {"text": "queued"}

    asyncio.run(scenario())


def test_result_times_out(server: CrankRun) -> None:
    async def scenario() -> None:
        async with AsyncClient(server.url) as client:
            task = await client.submit("demo.slow", {"seconds": 1.0})
            with pytest.raises(TaskTimeout) as caught:
                await task.result(timeout=0.05)
            assert caught.value.task_id == task.id
            assert await task.result(timeout=30) == {"slept": 1.0}

    asyncio.run(scenario())


def test_result_waits_on_the_server_in_one_request(
    server: CrankRun, dropping_proxy: Any, tmp_path: Path
) -> None:
    proxy = dropping_proxy(server.port, drop_after=b"never sent")
    gate = tmp_path / "gate"

    async def scenario() -> tuple[str, Any]:
        async with AsyncClient(proxy.url) as client:
            task = await client.submit("client.gated", {"gate": str(gate)})
            looks = f"get /v1/tasks/{task.id}?"
            waiting = asyncio.create_task(task.result(timeout=120))
            await asyncio.to_thread(
                server.wait_until,
                lambda: any(r.startswith(looks) for r in proxy.requests),
                what="the long-poll",
            )
            gate.touch()  # the task ends while the request waits at the server
            return task.id, await waiting

    task_id, result = asyncio.run(scenario())
    assert [event["step"] for event in result] == [1, 2, 3, 4]
    assert result[2]["gate_opened"] is True
    # one request, answered when the task ended: no polling
    [look] = [r for r in proxy.requests if r.startswith(f"get /v1/tasks/{task_id}?")]
    assert look.startswith(f"get /v1/tasks/{task_id}?wait=30.000 ")


def test_events_resume_after_a_dropped_connection(
    server: CrankRun, dropping_proxy: Any, tmp_path: Path
) -> None:
    proxy = dropping_proxy(server.port, drop_after=b"id: 2\n")
    gate = tmp_path / "gate"

    async def scenario() -> tuple[str, list[TaskEvent]]:
        seen: list[TaskEvent] = []
        async with AsyncClient(proxy.url) as client:
            task = await client.submit("client.gated", {"gate": str(gate)})
            async for event in task.events(timeout=60):
                seen.append(event)
                if event.id == 2:
                    assert await asyncio.to_thread(proxy.dropped.wait, 30)
                    gate.touch()
        return task.id, seen

    task_id, seen = asyncio.run(scenario())
    assert [e.data["step"] for e in seen] == [1, 2, 3, 4]
    assert [e.id for e in seen] == [1, 2, 3, 4]
    assert seen[2].data["gate_opened"] is True
    streams = [r for r in proxy.requests if r.startswith(f"get /v1/tasks/{task_id}/events")]
    assert ["last-event-id: 2" in r for r in streams] == [False, True]


def test_failures_warnings_and_refusals(server: CrankRun) -> None:
    async def scenario() -> None:
        async with AsyncClient(server.url) as client:
            with pytest.raises(TaskFailed) as refused:
                await client.call("client.refuse", {"why": "async"})
            assert (refused.value.code, refused.value.declared) == ("NOT_ALLOWED", True)

            task = await client.submit("client.stream_then_refuse", {})
            seen = []
            with pytest.raises(TaskFailed) as mid_stream:
                async for event in task.events(timeout=30):
                    seen.append(event.data["i"])
            assert seen == [1, 2]
            assert mid_stream.value.code == "NOT_ALLOWED"

            with pytest.warns(CapabilityDeprecated, match="call demo.echo instead") as warned:
                await client.call("demo.legacy_echo", {"text": "old"})
            assert warned[0].filename == __file__

            with pytest.raises(ApiError) as invalid:
                await client.submit("demo.echo", {"text": 5})
            assert (invalid.value.status, invalid.value.code) == (400, "INVALID_INPUT")
            with pytest.raises(TaskNotFound):
                await client.task("missing").status()
            finished = await client.submit("demo.echo", {"text": "x"})
            await finished.result(timeout=60)
            with pytest.raises(ApiError) as too_late:
                await finished.cancel()
            assert (too_late.value.status, too_late.value.code) == (409, "TASK_FINISHED")

    asyncio.run(scenario())


def test_a_deprecated_call_run_by_gather_warns_in_the_callers_file(server: CrankRun) -> None:
    """Run by asyncio.gather, the warning pointed at asyncio/events.py, where Python's
    default filters hide a DeprecationWarning: the documented example warned nothing."""

    async def scenario() -> list[Any]:
        async with AsyncClient(server.url) as client:
            return await asyncio.gather(client.call("demo.legacy_echo", {"text": "old"}))

    with pytest.warns(CapabilityDeprecated, match="call demo.echo instead") as warned:
        assert asyncio.run(scenario()) == [{"text": "old"}]
    assert [w.filename for w in warned] == [__file__]


def test_a_client_used_in_a_second_event_loop_says_so(server: CrankRun) -> None:
    """A second asyncio.run with the same AsyncClient used the first loop's connections:
    httpx's RuntimeError ("Event loop is closed") once that loop had ended."""
    client = AsyncClient(server.url)

    async def call() -> Any:
        return await client.call("demo.echo", {"text": "x"})

    first = asyncio.new_event_loop()
    try:
        assert first.run_until_complete(call()) == {"text": "x"}
        with pytest.raises(ClientError, match="used in another event loop") as caught:
            asyncio.run(call())
        assert not isinstance(caught.value, ClientClosed)
        first.run_until_complete(client.aclose())
    finally:
        first.close()
    with pytest.raises(ClientClosed):
        asyncio.run(call())


def test_no_server_is_unreachable() -> None:
    async def scenario() -> None:
        url = f"http://127.0.0.1:{free_port()}"
        async with AsyncClient(url, retry=RetryPolicy(attempts=2)) as client:
            with pytest.raises(ServerUnreachable, match="after 2 tries"):
                await client.submit("demo.echo", {"text": "x"})

    asyncio.run(scenario())


def test_dead_letters_are_listed_and_redriven(server: CrankRun) -> None:
    async def dead(client: AsyncClient, task_id: str) -> None:
        with pytest.raises(TaskFailed) as caught:
            await client.task(task_id).result(timeout=60)
        assert caught.value.task_status == "dead"

    async def scenario() -> None:
        async with AsyncClient(server.url, caller="async-redrive") as client:
            first = await client.submit("client.crash", {"why": "first"})
            second = await client.submit("client.crash", {"why": "second"})
            for task in (first, second):
                await dead(client, task.id)
            page = await client.list_tasks(status="dead", caller="async-redrive")
            assert [t.id for t in page.tasks] == [second.id, first.id]  # newest first
            assert page.callers == {first.id: "async-redrive", second.id: "async-redrive"}
            one = await client.list_tasks(status="dead", caller="async-redrive", limit=1)
            assert [t.id for t in one.tasks] == [second.id]
            rest = await client.list_tasks(
                status="dead", caller="async-redrive", cursor=one.next_cursor
            )
            assert [t.id for t in rest.tasks] == [first.id]

            again = await client.redrive(first.id)
            assert (again.id, again.status) == (first.id, "pending")
            await dead(client, first.id)  # still crashing: dead again
            assert await client.redrive_dead_letters("client.crash") == 2
            for task in (first, second):
                await dead(client, task.id)

            done = await client.submit("demo.echo", {"text": "fine"})
            assert await done.result(timeout=60) == {"text": "fine"}
            with pytest.raises(ApiError) as refused:
                await client.redrive(done.id)
            assert (refused.value.status, refused.value.code) == (409, "NOT_A_DEAD_LETTER")
            with pytest.raises(TaskNotFound):
                await client.redrive("no-such-task")

    asyncio.run(scenario())
