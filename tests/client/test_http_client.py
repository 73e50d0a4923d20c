"""``crank.Client`` against a real ``crank run`` (real processes, real HTTP, SQLite)."""

from __future__ import annotations

import math
import threading
import uuid
from typing import TYPE_CHECKING, Any

import pytest

from crank import Client
from crank.client import (
    ApiError,
    CapabilityDeprecated,
    InvalidTask,
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


@pytest.fixture
def client(server: CrankRun) -> Any:
    with Client(server.url) as made:
        yield made


def test_call_returns_the_output(client: Client) -> None:
    assert client.call("demo.echo", {"text": "hello", "shout": True}) == {"text": "HELLO"}


def test_submit_then_wait_for_the_result(client: Client) -> None:
    task = client.submit("demo.echo", {"text": "queued"}, priority=5)
    assert task.info is not None
    assert task.info.status in ("pending", "running", "succeeded")
    assert task.info.priority == 5
    assert task.result(timeout=30) == {"text": "queued"}
    info = task.status()
    assert (info.id, info.capability, info.status, info.done) == (
        task.id,
        "demo.echo",
        "succeeded",
        True,
    )
    assert info.result == {"text": "queued"}
    assert info.attempts == 1
    # a handle made from the id alone reads the same task
    assert client.task(task.id).result(timeout=5) == {"text": "queued"}


def test_result_times_out_and_the_task_goes_on(client: Client) -> None:
    task = client.submit("demo.slow", {"seconds": 1.5})
    with pytest.raises(TaskTimeout) as caught:
        task.result(timeout=0.05)
    assert caught.value.task_id == task.id
    assert isinstance(caught.value, TimeoutError)
    assert task.result(timeout=30) == {"slept": 1.5}


GATED_RESULT = [{"step": 1}, {"step": 2}, {"step": 3, "gate_opened": True}, {"step": 4}]


def test_result_waits_on_the_server_in_one_request(
    server: CrankRun, dropping_proxy: Any, tmp_path: Path
) -> None:
    proxy = dropping_proxy(server.port, drop_after=b"never sent")
    gate = tmp_path / "gate"
    with Client(proxy.url) as client:
        task = client.submit("client.gated", {"gate": str(gate)})
        looks = f"get /v1/tasks/{task.id}?"
        answer: dict[str, Any] = {}
        waiter = threading.Thread(target=lambda: answer.update(result=task.result(timeout=120)))
        waiter.start()
        server.wait_until(
            lambda: any(r.startswith(looks) for r in proxy.requests), what="the long-poll"
        )
        gate.touch()  # the task ends while the request waits at the server
        waiter.join(120)
    assert answer["result"] == GATED_RESULT
    # one request, answered when the task ended: no polling
    [look] = [r for r in proxy.requests if r.startswith(looks)]
    assert look.startswith(f"get /v1/tasks/{task.id}?wait=30.000 ")
    assert task.info is not None and task.info.status == "succeeded"


def test_a_call_past_the_capabilitys_timeout_names_its_task(client: Client) -> None:
    # demo.slow answers within 2 s or not at all: the server gives up with 504
    with pytest.raises(TaskTimeout) as caught:
        client.call("demo.slow", {"seconds": 3})
    assert caught.value.task_id
    assert client.task(caught.value.task_id).status().capability == "demo.slow"
    assert caught.value.timeout_s is None  # the caller gave none: the server's ran out
    assert caught.value.message == (
        f"the server stopped waiting for task {caught.value.task_id} at its capability's "
        "timeout_s: demo.slow did not finish within 2 s"
    )
    # the caller's own timeout, longer than the server's wait, is the one carried
    with pytest.raises(TaskTimeout) as bounded:
        client.call("demo.slow", {"seconds": 3}, timeout=60)
    assert (bounded.value.timeout_s, bounded.value.task_id is not None) == (60, True)


def test_events_of_a_streaming_task(client: Client) -> None:
    task = client.submit("demo.count", {"n": 4})
    events = list(task.events(timeout=30))
    assert events == [TaskEvent(i, {"i": i}) for i in range(1, 5)]
    # resumed after the second event: the rest only
    assert [e.id for e in task.events(after=2)] == [3, 4]


def test_events_resume_after_a_dropped_connection(
    server: CrankRun, dropping_proxy: Any, tmp_path: Path
) -> None:
    proxy = dropping_proxy(server.port, drop_after=b"id: 2\n")
    gate = tmp_path / "gate"
    seen: list[TaskEvent] = []
    with Client(proxy.url) as client:
        task = client.submit("client.gated", {"gate": str(gate)})
        for event in task.events(timeout=60):
            seen.append(event)
            if event.id == 2:
                # the handler waits at the gate; the proxy cut the stream after event 2
                assert proxy.dropped.wait(30)
                gate.touch()
    assert [e.id for e in seen] == [1, 2, 3, 4]
    assert [e.data["step"] for e in seen] == [1, 2, 3, 4]
    # step 3 came after the reconnection, while the task was still running
    assert seen[2].data["gate_opened"] is True
    streams = [r for r in proxy.requests if r.startswith(f"get /v1/tasks/{task.id}/events")]
    assert len(streams) == 2
    assert "last-event-id: 0" in streams[0]
    assert "last-event-id: 2" in streams[1]


def test_a_declared_error_is_raised_with_its_code(client: Client) -> None:
    with pytest.raises(TaskFailed) as caught:
        client.call("client.refuse", {"why": "because"})
    failure = caught.value
    assert failure.code == "NOT_ALLOWED"
    assert failure.declared is True
    assert "refused: because" in str(failure)
    assert failure.task_id
    # how it ended, as docs/client.md promises for a synchronous call too
    assert (failure.task_status, failure.attempts) == ("failed", 1)
    assert client.task(failure.task_id).status().status == "failed"
    # the same failure through a queued task
    task = client.submit("client.refuse", {"why": "queued"})
    with pytest.raises(TaskFailed) as queued:
        task.result(timeout=30)
    assert queued.value.code == "NOT_ALLOWED"
    # the status the server reports for it (``failed`` or ``dead``, docs/runtime.md)
    assert queued.value.task_status == task.status().status
    assert queued.value.task_status in ("failed", "dead")
    assert queued.value.attempts == 1


def test_a_crash_in_a_synchronous_call_is_raised_as_a_dead_task(client: Client) -> None:
    with pytest.raises(TaskFailed) as caught:
        client.call("client.crash", {"why": "sync"})
    failure = caught.value
    assert (failure.code, failure.declared) == ("INTERNAL", False)  # the 502 says WORKER_FAILED
    assert (failure.task_status, failure.attempts) == ("dead", 1)  # max_attempts: 1
    assert f"task {failure.task_id} ended dead after 1 attempt(s)" in str(failure)


def test_a_stream_that_fails_raises_after_its_events(client: Client) -> None:
    task = client.submit("client.stream_then_refuse", {})
    seen: list[int] = []
    with pytest.raises(TaskFailed) as caught:
        for event in task.events(timeout=30):
            seen.append(event.data["i"])
    assert seen == [1, 2]
    assert caught.value.code == "NOT_ALLOWED"


def test_a_deprecated_id_warns_naming_its_successor(client: Client) -> None:
    with pytest.warns(CapabilityDeprecated, match="demo.echo") as warned:
        assert client.call("demo.legacy_echo", {"text": "old"}) == {"text": "old"}
    warning = warned[0]
    assert isinstance(warning.message, CapabilityDeprecated)
    assert warning.message.successors == ("demo.echo",)
    assert warning.message.requested == "demo.legacy_echo"
    assert warning.message.sunset is not None and "2099" in warning.message.sunset
    assert issubclass(warning.category, DeprecationWarning)
    # pointed at the line that called, not at the client's insides
    assert warning.filename == __file__


def test_a_refused_call_of_a_deprecated_id_warns_too(client: Client) -> None:
    """The caller whose input is wrong hears of the successor as well as of its mistake."""
    with (
        pytest.warns(CapabilityDeprecated, match="demo.echo") as warned,
        pytest.raises(ApiError) as invalid,
    ):
        client.call("demo.legacy_echo", {"txt": "typo"})
    assert (invalid.value.status, invalid.value.code) == (400, "INVALID_INPUT")
    assert warned[0].filename == __file__


def test_refused_requests_raise_the_documented_code(client: Client) -> None:
    with pytest.raises(ApiError) as invalid:
        client.call("demo.echo", {"txt": "typo"})
    assert (invalid.value.status, invalid.value.code) == (400, "INVALID_INPUT")
    assert invalid.value.details["errors"]
    with pytest.raises(ApiError) as unknown:
        client.submit("demo.nope", {})
    assert (unknown.value.status, unknown.value.code) == (404, "CAPABILITY_NOT_FOUND")
    with pytest.raises(ApiError) as gone:
        client.call("demo.retired", {"text": "x"})
    assert (gone.value.status, gone.value.code) == (410, "CAPABILITY_GONE")
    assert gone.value.details["successors"] == ["demo.echo"]
    with pytest.raises(TaskNotFound) as missing:
        client.task("no-such-task").status()
    assert missing.value.task_id == "no-such-task"


def test_bad_input_is_refused_before_sending(client: Client) -> None:
    with pytest.raises(InvalidTask, match="must be a mapping"):
        client.call("demo.echo", ["not", "an", "object"])  # type: ignore[arg-type]
    with pytest.raises(InvalidTask, match="cannot be sent as JSON"):
        client.submit("demo.echo", {"text": math.nan})
    with pytest.raises(InvalidTask, match="non-empty id"):
        client.call("", {})


def test_the_same_idempotency_key_gives_the_same_task(client: Client) -> None:
    key = uuid.uuid4().hex
    first = client.submit("demo.echo", {"text": "once"}, idempotency_key=key)
    again = client.submit("demo.echo", {"text": "once"}, idempotency_key=key)
    assert again.id == first.id
    # without a key of its own, each submit is a task of its own
    assert client.submit("demo.echo", {"text": "once"}).id != first.id


def test_cancelling_a_task_that_ended_is_refused(client: Client) -> None:
    task = client.submit("demo.echo", {"text": "x"})
    task.result(timeout=60)
    with pytest.raises(ApiError) as too_late:
        task.cancel()
    assert (too_late.value.status, too_late.value.code) == (409, "TASK_FINISHED")
    assert too_late.value.details["task_status"] == "succeeded"


def test_redriving_no_such_task_names_it(client: Client) -> None:
    """The 404 was read for a task id only on /v1/tasks/ paths: redrive's had ''."""
    with pytest.raises(TaskNotFound) as caught:
        client.redrive("no-such-task")
    assert caught.value.task_id == "no-such-task"


def test_no_server_is_unreachable_after_the_retries() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with (
        Client(url, retry=RetryPolicy(attempts=2)) as client,
        pytest.raises(ServerUnreachable, match="after 2 tries"),
    ):
        client.call("demo.echo", {"text": "x"})


def test_a_full_queue_is_retried_after_retry_after(crank_run: Any) -> None:
    """429 QUEUE_FULL: the client waits what Retry-After says and tries again."""
    run = crank_run("--max-workers", "0", env={"CRANK_MAX_PENDING": "1"})
    with Client(run.url) as client:
        first = client.submit("demo.echo", {"text": "fills the queue"})
        with (
            Client(run.url, retry=RetryPolicy(attempts=2, max_wait_s=0.1)) as impatient,
            pytest.raises(ApiError) as full,
        ):
            impatient.submit("demo.echo", {"text": "no room"})
        assert (full.value.status, full.value.code) == (429, "QUEUE_FULL")
        assert full.value.retry_after_s == 1.0

        outcome: dict[str, Any] = {}

        def submit_second() -> None:
            outcome["task"] = client.submit("demo.echo", {"text": "room at last"})

        waiting = threading.Thread(target=submit_second)
        waiting.start()
        # once the server has refused this submit too, make room: take the first task
        run.wait_until(lambda: _refusals(run) >= 3, what="a third 429")
        _take(run.broker_url, first.id)
        waiting.join(timeout=60)
        assert not waiting.is_alive()
        assert outcome["task"].id != first.id


def _refusals(run: CrankRun) -> int:
    text = run.http.get("/metrics").text
    return sum(
        int(float(line.rsplit(" ", 1)[1]))
        for line in text.splitlines()
        if line.startswith("crank_http_requests_total{") and 'status="429"' in line
    )


def _take(broker_url: str, task_id: str) -> None:
    """Claim and ack a pending task straight in the broker (no worker runs here)."""
    from crank.runtime.brokers import open_broker
    from crank.runtime.brokers.contract import ClaimOptions

    broker = open_broker(broker_url)
    try:
        claims = broker.claim(ClaimOptions(consumer="test", limit=10))
        assert [c.task.id for c in claims] == [task_id]
        broker.ack(claims[0], {"text": "taken by the test"})
    finally:
        broker.close()


def test_a_bearer_token_is_sent(crank_run: Any) -> None:
    run = crank_run(env={"CRANK_API_TOKEN": "s3cret-token"})
    with Client(run.url) as anonymous, pytest.raises(ApiError) as refused:
        anonymous.call("demo.echo", {"text": "x"})
    assert (refused.value.status, refused.value.code) == (401, "UNAUTHORIZED")
    with Client(run.url, token="s3cret-token") as client:
        assert client.call("demo.echo", {"text": "x"}) == {"text": "x"}
