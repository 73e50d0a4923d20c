"""What the HTTP clients bound and refuse: the caller's timeouts (429 retries, a stalled
server, an event stream), ids that would reach another route, answers that are not a
crank server's, and arguments no request could use."""

from __future__ import annotations

import asyncio
import socket
import threading
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from crank import AsyncClient, Client
from crank.client import (
    ApiError,
    ClientClosed,
    ClientError,
    InvalidTask,
    RetryPolicy,
    ServerUnreachable,
    TaskEvent,
    TaskFailed,
    TaskNotFound,
    TaskTimeout,
    exchange,
)
from crank.runtime.http.sse import KEEPALIVE_S

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from ..runtime.serve.conftest import CrankRun
    from .conftest import EventStreamServer

BUSY = {"error": {"code": "OVERLOADED", "message": "busy"}}
QUEUED = {"id": "t1", "capability": "demo.echo", "status": "pending", "attempts": 0}
HTML = (200, {"Content-Type": "text/html"}, b"<html><body>Welcome</body></html>")


class Silent:
    """A server that takes connections and requests and never answers."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self.requests = 0
        self._held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self._held.append(conn)
            self.requests += 1

    def close(self) -> None:
        self._listener.close()
        for conn in self._held:
            conn.close()


@pytest.fixture
def silent() -> Iterator[Silent]:
    server = Silent()
    yield server
    server.close()


# -- the caller's timeout -----------------------------------------------------------------


def test_a_429_whose_retry_after_ends_past_the_timeout_is_raised_at_once(scripted: Any) -> None:
    """``call(timeout=...)`` bounds the retries too: a 429 asking for 30 s is not waited
    out by a caller with 1 s (it was, and the call answered after 30 s)."""
    busy = (429, {"Retry-After": "30"}, BUSY)
    server = scripted([busy, busy, (200, {}, {"text": "late"})])
    with Client(server.url) as client, pytest.raises(ApiError) as caught:
        client.call("demo.echo", {"text": "x"}, timeout=1)
    assert (caught.value.status, caught.value.retry_after_s) == (429, 30.0)
    assert len(server.requests) == 1

    async def main() -> None:
        async with AsyncClient(server.url) as client:
            with pytest.raises(ApiError) as caught:
                await client.call("demo.echo", {"text": "x"}, timeout=1)
            assert caught.value.status == 429

    asyncio.run(main())
    assert len(server.requests) == 2


def test_a_result_from_a_server_that_never_answers_is_a_timeout_of_the_task(
    silent: Silent,
) -> None:
    """``result(timeout)`` reads no longer than the timeout and a moment: a stalled server
    (or proxy) is a ``TaskTimeout`` naming the task, not ``ServerUnreachable`` after the
    client's own 30 s read timeout on top."""
    with Client(silent.url, timeout=600) as client, pytest.raises(TaskTimeout) as caught:
        client.task("t1").result(timeout=0.5)
    assert (caught.value.task_id, caught.value.timeout_s) == ("t1", 0.5)
    # so is a call given a timeout (without one, it waits as long as the server does)
    with Client(silent.url, timeout=600) as client, pytest.raises(TaskTimeout) as called:
        client.call("demo.echo", {"text": "x"}, timeout=0.5)
    assert (called.value.task_id, called.value.timeout_s) == (None, 0.5)

    async def main() -> None:
        async with AsyncClient(silent.url, timeout=600) as client:
            with pytest.raises(TaskTimeout) as caught:
                await client.task("t2").result(timeout=0.5)
            assert caught.value.task_id == "t2"

    asyncio.run(main())


@pytest.mark.slow
def test_events_end_at_the_callers_timeout(server: CrankRun, tmp_path: Path) -> None:
    """``events(timeout=...)`` bounds the whole wait: a task held at its gate for 20 s
    raises ``TaskTimeout`` after its two first events (it used to stream on until the
    gate's own 20 s ran out and end without one)."""
    with Client(server.url) as client:
        task = client.submit("client.gated", {"gate": str(tmp_path / "never")})
        seen: list[int] = []
        with pytest.raises(TaskTimeout) as caught:
            for event in task.events(timeout=2):
                seen.append(event.id)
        assert seen == [1, 2]
        assert caught.value.task_id == task.id
        # the caller's timeout, in one message (it read "did not finish: the task did not
        # finish within 2 s", the server's words, with timeout_s None)
        assert caught.value.timeout_s == 2
        assert caught.value.message == f"task {task.id} did not finish within 2 s"

    async def main() -> list[int]:
        async with AsyncClient(server.url) as client:
            task = client.task(client_task_id)
            seen = []
            with pytest.raises(TaskTimeout) as caught:
                async for event in task.events(timeout=1):
                    seen.append(event.id)
            assert caught.value.timeout_s == 1
            return seen

    client_task_id = task.id
    assert asyncio.run(main()) == [1, 2]


@pytest.mark.slow
def test_a_stream_whose_task_ran_out_of_time_raises_its_failure(server: CrankRun) -> None:
    """A task that *ended* with code TIMEOUT (its handler ran past timeout_s) is a
    failure after its events, not the stream's own wait running out: the client
    reconnected at once, for ever, thousands of times a second."""
    with Client(server.url) as client:
        task = client.submit("client.overrun", {})
        seen: list[TaskEvent] = []
        with pytest.raises(TaskFailed) as caught:
            for event in task.events(timeout=120):
                seen.append(event)
        assert (caught.value.code, caught.value.task_status) == ("TIMEOUT", "dead")
        assert caught.value.declared is None  # dead: only the server's manifest tells
        assert seen and [e.id for e in seen] == list(range(1, len(seen) + 1))
        with pytest.raises(TaskFailed) as again:
            task.result(timeout=60)
        assert again.value.code == "TIMEOUT"


@pytest.mark.slow
def test_a_failed_task_is_declared_whichever_way_it_is_read(server: CrankRun) -> None:
    with Client(server.url) as client:
        task = client.submit("client.refuse", {"why": "queued"})
        with pytest.raises(TaskFailed) as caught:
            task.result(timeout=60)
        assert (caught.value.task_status, caught.value.declared) == ("failed", True)
        stream = client.submit("client.stream_then_refuse", {})
        with pytest.raises(TaskFailed) as streamed:
            list(stream.events(timeout=60))
        assert (streamed.value.code, streamed.value.declared) == ("NOT_ALLOWED", True)


# -- event streams that misbehave ---------------------------------------------------------


def _event(number: int) -> bytes:
    return f'id: {number}\ndata: {{"n": {number}}}\n\n'.encode()


END = b"event: end\ndata: {}\n\n"


def test_a_stream_is_dead_after_several_keep_alive_intervals_of_silence() -> None:
    assert exchange.STREAM_SILENCE_S >= 3 * KEEPALIVE_S


def test_a_stream_gone_silent_is_resumed_after_its_last_event(
    event_stream_server: type[EventStreamServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stream that sent one event and then nothing (a half-open connection) held
    ``events()`` for ever: a live stream sends a keep-alive comment every 15 s, so one
    silent for several is dead, and is resumed with ``Last-Event-ID`` like a dropped one."""
    monkeypatch.setattr(exchange, "STREAM_SILENCE_S", 1.0)  # the test's, instead of 45 s

    def answer(after: int) -> tuple[bytes, bool]:
        return (_event(1), True) if after == 0 else (_event(2) + END, False)

    server = event_stream_server(answer)
    with Client(server.url) as client:
        assert [e.id for e in client.task("t1").events()] == [1, 2]
    assert server.last_event_ids[-1] == 1

    async def main() -> list[int]:
        async with AsyncClient(server.url) as client:
            return [e.id async for e in client.task("t1").events()]

    assert asyncio.run(main()) == [1, 2]
    assert server.last_event_ids[-1] == 1


@pytest.mark.slow
def test_events_that_find_no_free_connection_are_unreachable(
    server: CrankRun, tmp_path: Path
) -> None:
    """With every connection of its pool held, events() raised httpx.PoolTimeout."""
    gate = tmp_path / "gate"
    transport = httpx.HTTPTransport(limits=httpx.Limits(max_connections=1))
    policy = RetryPolicy(attempts=2, backoff_s=0.01)
    with Client(server.url, timeout=0.5, transport=transport, retry=policy) as client:
        task = client.submit("client.gated", {"gate": str(gate)})
        held = task.events()  # open at its gate: the pool's one connection
        assert next(held).id == 1
        with pytest.raises(ServerUnreachable, match="PoolTimeout") as caught:
            next(client.task(task.id).events())
        assert "after 2 tries" in caught.value.message
        gate.touch()
        assert [event.id for event in held] == [2, 3, 4]


def test_a_stream_that_stays_silent_gives_up_within_the_retry_policy(
    event_stream_server: type[EventStreamServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(exchange, "STREAM_SILENCE_S", 0.2)
    server = event_stream_server(lambda after: (b"", True))
    policy = RetryPolicy(attempts=2, backoff_s=0)
    with Client(server.url, retry=policy) as client, pytest.raises(ServerUnreachable) as caught:
        list(client.task("t1").events())
    assert "went silent for 0.2 s, 2 times in a row" in caught.value.message
    assert server.last_event_ids == [0, 0]

    async def main() -> None:
        async with AsyncClient(server.url, retry=policy) as client:
            with pytest.raises(ServerUnreachable, match="went silent"):
                [e async for e in client.task("t1").events()]

    asyncio.run(main())
    assert len(server.last_event_ids) == 4


def test_streams_that_end_early_without_an_event_count_against_the_retry_policy(
    event_stream_server: type[EventStreamServer],
) -> None:
    """An empty ``200 text/event-stream`` (not crank's: it ends a stream with the task)
    was asked again for ever, ``RetryPolicy.attempts`` unheeded. A stream that ends
    early after an event is no such failure: only connections in a row without one count."""
    policy = RetryPolicy(attempts=3, backoff_s=0)
    empty = event_stream_server(lambda after: (b"", False))
    with Client(empty.url, retry=policy) as client, pytest.raises(ServerUnreachable) as caught:
        list(client.task("t1").events())
    assert "ended before the task, without an event, 3 times in a row" in caught.value.message
    assert empty.last_event_ids == [0, 0, 0]

    async def main() -> None:
        async with AsyncClient(empty.url, retry=policy) as client:
            with pytest.raises(ServerUnreachable, match="3 times in a row"):
                [e async for e in client.task("t1").events()]

    asyncio.run(main())
    assert len(empty.last_event_ids) == 6

    one_at_a_time = event_stream_server(
        lambda after: (_event(after + 1), False) if after < 5 else (END, False)
    )
    with Client(one_at_a_time.url, retry=policy) as client:
        assert [e.id for e in client.task("t1").events()] == [1, 2, 3, 4, 5]
    assert one_at_a_time.last_event_ids == [0, 1, 2, 3, 4, 5]


def test_events_a_server_sends_again_are_handed_out_once(
    event_stream_server: type[EventStreamServer],
) -> None:
    """A server or proxy that ignores ``Last-Event-ID`` starts the stream over: the
    events before the resume point came out twice ([1, 2, 1, 2, 3])."""

    def answer(after: int) -> tuple[bytes, bool]:
        if after == 0:
            return _event(1) + _event(2), False  # then the connection drops
        return _event(1) + _event(2) + _event(3) + END, False

    server = event_stream_server(answer)
    with Client(server.url) as client:
        assert [e.id for e in client.task("t1").events()] == [1, 2, 3]
    assert server.last_event_ids == [0, 2]

    async def main() -> list[int]:
        async with AsyncClient(server.url) as client:
            return [e.id async for e in client.task("t1").events()]

    assert asyncio.run(main()) == [1, 2, 3]


# -- ids ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_an_id_cannot_reach_another_route(server: CrankRun) -> None:
    """A task id went into the path as it was: ``task("../dead-letters/<id>").cancel()``
    purged a dead letter, ``task("abc?wait=1")`` read task ``abc``."""
    with Client(server.url) as client:
        with pytest.raises(TaskFailed) as crashed:
            client.call("client.crash", {"why": "a dead letter"})
        dead = crashed.value.task_id
        for odd in (f"../dead-letters/{dead}", "..", ".", "", "a/b"):
            with pytest.raises(InvalidTask):
                client.task(odd).cancel()
        with pytest.raises(InvalidTask):
            client.call("client.refuse/../../tasks", {"why": "x"})
        assert client.task(dead).status().status == "dead"  # still a dead letter
        with pytest.raises(TaskNotFound) as missing:
            client.task("abc?wait=1#x").status()
        assert missing.value.task_id == "abc?wait=1#x"


@pytest.mark.parametrize(
    ("task_id", "message"),
    [
        (123, "a task id must be a string, not int 123"),
        (None, "a task id must be a string, not NoneType None"),
        ("", "task id '' cannot be one: empty, '.', '..' or holding a '/'"),
    ],
)
def test_a_task_id_that_cannot_be_one_is_refused(
    scripted: Any, task_id: object, message: str
) -> None:
    """``task(123).status()`` raised ``TypeError: argument of type 'int' is not iterable``."""
    server = scripted([(200, {}, QUEUED)])
    with Client(server.url) as client, pytest.raises(InvalidTask) as caught:
        client.task(task_id).status()  # type: ignore[arg-type]
    assert caught.value.message == message

    async def main() -> None:
        async with AsyncClient(server.url) as client:
            with pytest.raises(InvalidTask, match="task id"):
                client.task(task_id)  # type: ignore[arg-type]

    asyncio.run(main())
    assert server.requests == []


# -- answers that are not a crank server's ------------------------------------------------


def test_answers_that_are_not_a_crank_servers_are_api_errors(scripted: Any) -> None:
    server = scripted([HTML])
    with Client(server.url) as client:
        for attempt in (
            lambda: client.call("demo.echo", {"text": "x"}),
            lambda: client.submit("demo.echo", {"text": "x"}),
            lambda: client.task("t1").status(),
            lambda: client.task("t1").result(timeout=5),
            lambda: list(client.task("t1").events(timeout=5)),
            lambda: client.list_tasks(),
            lambda: client.redrive_dead_letters("demo.echo"),
        ):
            with pytest.raises(ApiError) as caught:
                attempt()
            assert caught.value.code == "UNEXPECTED_ANSWER"
            assert "text/html" in caught.value.message
            assert caught.value.hint is not None and "base_url" in caught.value.hint

    async def main() -> None:
        async with AsyncClient(server.url) as client:
            with pytest.raises(ApiError) as caught:
                await client.call("demo.echo", {"text": "x"})
            assert caught.value.code == "UNEXPECTED_ANSWER"
            with pytest.raises(ApiError):
                [e async for e in client.task("t1").events(timeout=5)]

    asyncio.run(main())


def test_a_task_document_with_a_field_of_the_wrong_kind_is_an_api_error(scripted: Any) -> None:
    """``"attempts": "many"`` raised a bare ValueError from ``int()``."""
    many = {**QUEUED, "attempts": "many"}
    server = scripted([(200, {}, many)])
    with Client(server.url) as client:
        for attempt in (
            client.task("t1").status,
            client.task("t1").cancel,
            lambda: client.list_tasks(),
        ):
            with pytest.raises(ApiError) as caught:
                attempt()
            assert caught.value.code == "UNEXPECTED_ANSWER"
    server.answers[:] = [(200, {}, {"tasks": [many], "next_cursor": None})]
    with Client(server.url) as client, pytest.raises(ApiError, match="not a list of tasks"):
        client.list_tasks()


# -- arguments no request could use -------------------------------------------------------


@pytest.mark.parametrize("timeout", [0, -1, float("nan"), float("inf"), "5", True])
def test_a_call_timeout_that_is_no_number_of_seconds_is_refused(
    scripted: Any, timeout: object
) -> None:
    server = scripted([(200, {}, {"text": "x"})])
    with Client(server.url) as client, pytest.raises(ClientError, match="timeout"):
        client.call("demo.echo", {"text": "x"}, timeout=timeout)  # type: ignore[arg-type]
    assert server.requests == []


@pytest.mark.slow
def test_a_huge_timeout_waits_as_no_timeout_does(server: CrankRun) -> None:
    """A client or call timeout of 1e10 s or more raised the socket's OverflowError
    ("timestamp out of range for platform time_t") from every request of Client."""
    with Client(server.url, timeout=1e10) as client:
        assert client.call("demo.echo", {"text": "a"}) == {"text": "a"}
        assert client.submit("demo.echo", {"text": "b"}).result(timeout=1e300) == {"text": "b"}
    with Client(server.url) as client:
        assert client.call("demo.echo", {"text": "c"}, timeout=1e300) == {"text": "c"}

    async def main() -> None:
        async with AsyncClient(server.url, timeout=1e300) as client:
            assert await client.call("demo.echo", {"text": "d"}, timeout=1e300) == {"text": "d"}

    asyncio.run(main())


@pytest.mark.parametrize("after", ["2", -1, 1.5, True, None])
def test_an_after_that_is_no_event_id_is_refused(scripted: Any, after: object) -> None:
    """``events(after="2")`` raised a TypeError from inside the client; -1 was sent."""
    server = scripted([(200, {"Content-Type": "text/event-stream"}, b"event: end\ndata: {}\n\n")])
    with Client(server.url) as client, pytest.raises(ClientError, match="not the id of an event"):
        next(client.task("t1").events(after=after))  # type: ignore[arg-type]

    async def main() -> None:
        async with AsyncClient(server.url) as client:
            with pytest.raises(ClientError, match="not the id of an event"):
                await anext(client.task("t1").events(after=after))  # type: ignore[arg-type]

    asyncio.run(main())
    assert server.requests == []


def test_a_result_timeout_of_0_looks_once(scripted: Any) -> None:
    server = scripted([(200, {}, QUEUED)])
    with Client(server.url) as client:
        with pytest.raises(TaskTimeout):
            client.task("t1").result(timeout=0)
        with pytest.raises(ClientError, match="timeout"):
            client.task("t1").result(timeout=-1)
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    ("key", "got"),
    [
        (5, "int"),
        ("", "0 characters"),
        ("clé", "3 characters"),
        ("a\nb", "3 characters"),
        ("order-17\n", "9 characters"),
        ("two words", "9 characters"),
        ("k" * 201, "201 characters"),
    ],
)
def test_an_idempotency_key_the_server_would_refuse_is_refused_before_sending(
    scripted: Any, key: object, got: str
) -> None:
    """An int, a non-ASCII key or one with a line break raised TypeError,
    UnicodeEncodeError or httpx's LocalProtocolError, and "" was replaced by a random
    key; the broker client refuses them as InvalidTask, and so does this one now."""
    server = scripted([(202, {}, QUEUED)])
    message = (
        "the idempotency key of a demo.echo task must be 1 to 200 visible ASCII "
        f"characters without spaces (got {got})"
    )
    with Client(server.url) as client:
        for send in (client.call, client.submit):
            with pytest.raises(InvalidTask) as caught:
                send("demo.echo", {"text": "x"}, idempotency_key=key)  # type: ignore[operator]
            assert caught.value.message == message

    async def main() -> None:
        async with AsyncClient(server.url) as client:
            with pytest.raises(InvalidTask, match="visible ASCII"):
                await client.submit("demo.echo", {"text": "x"}, idempotency_key=key)  # type: ignore[arg-type]

    asyncio.run(main())
    assert server.requests == []


@pytest.mark.parametrize("token", ["abc\ndef", "sécret", "two words"])
def test_a_token_that_cannot_be_a_bearer_token_is_refused(token: str) -> None:
    with pytest.raises(ClientError, match="bearer token"):
        Client("http://127.0.0.1:9", token=token)


@pytest.mark.parametrize(
    "policy", [{"backoff_s": -1}, {"max_wait_s": -5}, {"max_wait_s": float("nan")}]
)
def test_a_retry_policy_with_a_negative_wait_is_refused(policy: dict[str, float]) -> None:
    with pytest.raises(ClientError, match="seconds, 0 or more"):
        RetryPolicy(**policy)


def test_a_closed_client_says_so(scripted: Any) -> None:
    """A call after close() raised httpx's RuntimeError ("the client has been closed")."""
    server = scripted([(200, {}, QUEUED)])
    client = Client(server.url)
    task = client.task("t1")
    client.close()
    for attempt in (
        lambda: client.submit("demo.echo", {"text": "x"}),
        task.status,
        lambda: list(task.events(timeout=5)),
        # it handed out a task and entered a with block as if open
        lambda: client.task("t1"),
        client.__enter__,
    ):
        with pytest.raises(ClientClosed, match="is closed"):
            attempt()
    client.close()  # closing again is harmless

    async def main() -> None:
        async with AsyncClient(server.url) as made:
            task = made.task("t1")
        for attempt in (task.status, made.__aenter__):
            with pytest.raises(ClientClosed, match="AsyncClient of"):
                await attempt()
        with pytest.raises(ClientClosed, match="AsyncClient of"):
            made.task("t1")

    asyncio.run(main())
    assert server.requests == []
