"""What only a misbehaving or future server does: 429s, hang-ups, DELETE, odd headers.

A scripted stdlib HTTP server answers canned responses in turn and records each
request, so the test sees exactly what the client sent on every try.
"""

from __future__ import annotations

import asyncio
import email.utils
import re
import time
from typing import TYPE_CHECKING, Any

import pytest

from crank import AsyncClient, Client, connect, connect_async
from crank.client import (
    ApiError,
    CancelNotSupported,
    CapabilityDeprecated,
    ClientError,
    RetryPolicy,
    TaskInfo,
)
from crank.client.waiting import LONG_POLL_S, LongPolls

from .conftest import DROP

if TYPE_CHECKING:
    from pathlib import Path

QUEUED = {"id": "t1", "capability": "demo.echo", "status": "pending", "attempts": 0}
BUSY = {"error": {"code": "OVERLOADED", "message": "busy", "hint": "retry after 1 s"}}
FAST = RetryPolicy(attempts=5, backoff_s=0.001)


def _keys(requests: list[tuple[str, str, dict[str, str]]]) -> list[str]:
    return [headers["idempotency-key"] for _, _, headers in requests]


def test_429_is_retried_after_retry_after_with_the_same_key(scripted: Any) -> None:
    server = scripted(
        [(429, {"Retry-After": "0"}, BUSY), (429, {"Retry-After": "0"}, BUSY), (202, {}, QUEUED)]
    )
    with Client(server.url, retry=FAST) as client:
        task = client.submit("demo.echo", {"text": "x"})
    assert task.id == "t1"
    keys = _keys(server.requests)
    assert len(keys) == 3
    assert len(set(keys)) == 1
    assert re.fullmatch(r"[0-9a-f]{32}", keys[0])


def test_a_hang_up_is_retried_with_the_same_key(scripted: Any) -> None:
    server = scripted([(DROP, {}, b""), (200, {}, {"text": "x"})])
    with Client(server.url, retry=FAST) as client:
        assert client.call("demo.echo", {"text": "x"}, idempotency_key="my-key") == {"text": "x"}
    assert _keys(server.requests) == ["my-key", "my-key"]


def test_the_async_client_retries_the_same_way(scripted: Any) -> None:
    server = scripted([(DROP, {}, b""), (429, {"Retry-After": "0"}, BUSY), (202, {}, QUEUED)])

    async def scenario() -> str:
        async with AsyncClient(server.url, retry=FAST) as client:
            return (await client.submit("demo.echo", {"text": "x"})).id

    assert asyncio.run(scenario()) == "t1"
    assert len(set(_keys(server.requests))) == 1
    assert len(server.requests) == 3


@pytest.mark.parametrize(("header", "seconds"), [("1.5", 1.5), ("2", 2.0), ("0.25", 0.25)])
def test_a_decimal_retry_after_is_taken_as_written(
    scripted: Any, header: str, seconds: float
) -> None:
    """``Retry-After: 1.5`` was ignored (the retry came after the client's own backoff,
    sooner than asked): a decimal is taken as it is, never shortened."""
    server = scripted([(429, {"Retry-After": header}, BUSY)])
    policy = RetryPolicy(attempts=1)
    with Client(server.url, retry=policy) as client, pytest.raises(ApiError) as caught:
        client.call("demo.echo", {"text": "x"})
    assert caught.value.retry_after_s == seconds


def test_when_the_retries_run_out_the_429_is_raised(scripted: Any) -> None:
    later = email.utils.formatdate(time.time() + 120, usegmt=True)
    server = scripted([(429, {"Retry-After": later}, BUSY)])
    with (
        Client(server.url, retry=RetryPolicy(attempts=1)) as client,
        pytest.raises(ApiError) as caught,
    ):
        client.submit("demo.echo", {"text": "x"})
    assert (caught.value.status, caught.value.code) == (429, "OVERLOADED")
    # an HTTP date is read as the seconds until then
    assert caught.value.retry_after_s is not None
    assert 60 < caught.value.retry_after_s <= 120
    assert caught.value.hint == "retry after 1 s"
    assert len(server.requests) == 1


def test_a_429_of_a_deprecated_id_warns_when_the_retries_run_out(scripted: Any) -> None:
    deprecated = {
        "Retry-After": "0",
        "Deprecation": "@1767225600",
        "Sunset": "Wed, 31 Mar 2027 23:59:59 GMT",
        "Link": '</v1/capabilities/demo.echo>; rel="successor-version"',
    }
    server = scripted([(429, deprecated, BUSY)])
    with (
        Client(server.url, retry=RetryPolicy(attempts=1)) as client,
        pytest.warns(CapabilityDeprecated, match="demo.echo") as warned,
        pytest.raises(ApiError) as caught,
    ):
        client.call("demo.legacy_echo", {"text": "x"})
    assert (caught.value.status, caught.value.code) == (429, "OVERLOADED")
    assert warned[0].filename == __file__

    async def scenario() -> None:
        async with AsyncClient(server.url, retry=RetryPolicy(attempts=1)) as client:
            await client.submit("demo.legacy_echo", {"text": "x"})

    with (
        pytest.warns(CapabilityDeprecated, match="demo.echo"),
        pytest.raises(ApiError, match="busy"),
    ):
        asyncio.run(scenario())


def test_an_answer_that_is_not_json_still_names_its_status(scripted: Any) -> None:
    server = scripted([(500, {"Content-Type": "text/plain"}, b"Internal Server Error")])
    with Client(server.url) as client, pytest.raises(ApiError) as caught:
        client.call("demo.echo", {"text": "x"})
    assert (caught.value.status, caught.value.code) == (500, "HTTP_500")
    assert "Internal Server Error" in caught.value.message
    assert len(server.requests) == 1  # a 500 is an answer: not retried


def test_cancel_on_a_server_that_supports_it(scripted: Any) -> None:
    error = {"code": "CANCELLED", "message": "cancelled before it ran"}
    cancelled = {**QUEUED, "status": "cancelled", "error": error, "outcome": "cancelled"}
    server = scripted([(202, {}, QUEUED), (200, {}, cancelled)])
    with Client(server.url) as client:
        info = client.submit("demo.echo", {"text": "x"}).cancel()
    assert isinstance(info, TaskInfo)
    assert (info.status, info.error, info.done) == ("cancelled", error, True)
    assert server.requests[1][:2] == ("DELETE", "/v1/tasks/t1")


def test_cancel_answered_405_by_a_server_without_the_route(scripted: Any) -> None:
    not_allowed = {"error": {"code": "METHOD_NOT_ALLOWED", "message": "DELETE is not allowed"}}
    server = scripted([(202, {}, QUEUED), (405, {"Allow": "GET"}, not_allowed)])
    with Client(server.url) as client:
        task = client.submit("demo.echo", {"text": "x"})
        with pytest.raises(CancelNotSupported, match=r"DELETE /v1/tasks/\{id\} answered 405"):
            task.cancel()


def test_cancel_answered_404_by_a_server_without_the_route(scripted: Any) -> None:
    not_found = {"error": {"code": "NOT_FOUND", "message": "no route"}}
    server = scripted([(202, {}, QUEUED), (404, {}, not_found)])
    with Client(server.url) as client:
        task = client.submit("demo.echo", {"text": "x"})
        with pytest.raises(CancelNotSupported, match="answered 404"):
            task.cancel()


def test_every_successor_is_named(scripted: Any) -> None:
    headers = {
        "Deprecation": "@1767225600",
        "Sunset": "Wed, 31 Mar 2027 23:59:59 GMT",
        "Link": '</v1/capabilities/email.spam>; rel="successor-version", '
        '</v1/capabilities/email.bill>; rel="successor-version"',
    }
    server = scripted([(200, headers, {"label": "spam"})])
    with (
        Client(server.url, caller="billing") as client,
        pytest.warns(CapabilityDeprecated) as warned,
    ):
        client.call("email.classification", {"text": "x"})
    warning = warned[0].message
    assert isinstance(warning, CapabilityDeprecated)
    assert warning.successors == ("email.spam", "email.bill")
    assert str(warning) == (
        "capability email.classification is deprecated (it stops answering after "
        "Wed, 31 Mar 2027 23:59:59 GMT): call email.spam, email.bill instead"
    )
    assert server.requests[0][2]["x-crank-caller"] == "billing"


def test_a_caller_the_server_would_ignore_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ClientError, match="cannot name a caller"):
        Client("http://127.0.0.1:1", caller="billing service")
    # straight to the broker too (it scopes keys as the server does), before it is opened
    queue = tmp_path / "queue.db"
    with pytest.raises(ClientError, match="caller 'billing service' cannot name a caller"):
        connect(f"sqlite:///{queue}", caller="billing service")
    assert not queue.exists()
    with pytest.raises(ClientError, match="cannot name a caller"):
        asyncio.run(connect_async(f"sqlite:///{queue}", caller="x" * 65))
    # the pattern's "$" matched before a final newline: "billing\n" passed
    with pytest.raises(ClientError, match="cannot name a caller"):
        connect(f"sqlite:///{queue}", caller="billing\n")
    with pytest.raises(ClientError, match="cannot name a caller"):
        Client("http://127.0.0.1:1", caller="billing\n")


@pytest.mark.parametrize(
    ("base_url", "timeout", "message"),
    [
        ("127.0.0.1:8080", 30.0, "base_url '127.0.0.1:8080' is not an http:// or https:// URL"),
        ("ftp://host", 30.0, "base_url 'ftp://host' is not an http:// or https:// URL"),
        ("http://", 30.0, "base_url 'http://' is not an http:// or https:// URL"),
        # every request went to /?x=1/v1/...: 404 "no route /" from crank run
        (
            "http://127.0.0.1:8080?x=1",
            30.0,
            "base_url 'http://127.0.0.1:8080?x=1' holds a query or a fragment: "
            "the client adds each request's path and query itself",
        ),
        (
            "http://127.0.0.1:8080/#top",
            30.0,
            "base_url 'http://127.0.0.1:8080/#top' holds a query or a fragment: "
            "the client adds each request's path and query itself",
        ),
        ("http://127.0.0.1:8080", -1, "timeout -1 is not a number of seconds above 0"),
        ("http://127.0.0.1:8080", float("nan"), "timeout nan is not a number of seconds above 0"),
    ],
)
def test_an_unusable_address_or_timeout_is_refused_when_the_client_is_made(
    base_url: str, timeout: float, message: str
) -> None:
    """Not at the first call, as the HTTP library's own error (UnsupportedProtocol)."""
    for make in (Client, AsyncClient):
        with pytest.raises(ClientError) as refused:
            make(base_url, timeout=timeout)
        assert refused.value.message == message
        assert refused.value.hint is not None
    assert Client("https://crank.example/", timeout=None).base_url == "https://crank.example"


def test_a_retry_policy_needs_one_attempt() -> None:
    with pytest.raises(ClientError, match="at least 1"):
        RetryPolicy(attempts=0)


def test_a_server_without_wait_is_asked_again_after_a_pause(scripted: Any) -> None:
    # an older server ignores ?wait= and answers an unfinished task at once
    done = {**QUEUED, "status": "succeeded", "attempts": 1, "result": {"text": "x"}}
    server = scripted([(200, {}, QUEUED), (200, {}, QUEUED), (200, {}, done)])
    with Client(server.url, retry=FAST) as client:
        assert client.task("t1").result(timeout=30) == {"text": "x"}
    paths = [path for _, path, _ in server.requests]
    assert len(paths) == 3
    # each look asks for a wait of at most the time left (30 s here), never more
    for path in paths:
        assert re.fullmatch(r"/v1/tasks/t1\?wait=(30\.000|[12][0-9]\.[0-9]{3})", path), path


def test_long_polls_pause_only_when_the_server_did_not_wait() -> None:
    polls = LongPolls()
    assert polls.wait_s(None) == LONG_POLL_S
    assert polls.wait_s(1000.0) == LONG_POLL_S
    # answered long before the wait asked for: a server without ?wait=
    assert polls.pause_s() > 0
    # a look that asks for no wait (the caller's time is up) never makes the next one pause
    assert polls.wait_s(-1.0) == 0.0
    assert polls.pause_s() == 0.0
