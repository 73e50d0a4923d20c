"""The console while its broker is down: the real Redis broker, stopped mid-test.

Every page that reads the broker and every action answers an HTML 503 page saying the
broker is unreachable, in the broker's words, with one warning line in the log and no
traceback; the overview says the queue's numbers are unknown instead of showing zeros.
"""

from __future__ import annotations

import io
import json
from typing import TYPE_CHECKING

from crank.runtime.brokers.contract import ClaimOptions, TaskSpec
from crank.runtime.logs import configure_logging

from ..http.conftest import wait_for_outage
from .test_pages import _text

if TYPE_CHECKING:
    from crank.runtime.brokers.contract import Broker

    from ..conftest import RedisServer
    from .conftest import ConsoleClient


def _dead_letter(broker: Broker) -> str:
    record = broker.submit(TaskSpec("demo.slow", {"seconds": 0}, max_attempts=1))
    [claim] = broker.claim(ClaimOptions("t", capabilities=("demo.slow",), block_s=10))
    broker.fail(claim, {"code": "BOOM", "message": "the model file is missing"}, retryable=False)
    return record.id


def _says_broker_unreachable(answer: object, what: str) -> str:
    status = getattr(answer, "status_code", None)
    page = str(getattr(answer, "text", ""))
    assert status == 503, (what, status, page)
    assert getattr(answer, "headers", {})["content-type"].startswith("text/html"), what
    text = _text(page)
    assert "Broker unreachable" in text, (what, text)
    # the broker's own message and hint
    assert "Redis broker redis://127.0.0.1:" in text, (what, text)
    assert "What to do: check that redis-server runs" in text, (what, text)
    return text


def test_every_page_and_action_that_needs_the_broker_says_it_is_unreachable(
    redis_console: ConsoleClient, redis_server_aof: RedisServer, logging_restored: None
) -> None:
    client = redis_console
    broker = client.services.broker
    pending = broker.submit(TaskSpec("demo.echo", {"text": "a"}))
    dead = _dead_letter(broker)
    stream = io.StringIO()
    configure_logging("prod", stream=stream)
    redis_server_aof.stop()
    wait_for_outage(client.http)

    pages = (
        "/ui/tasks",
        "/ui/tasks?status=dead",
        "/ui/dead-letters",
        f"/ui/tasks/{pending.id}",
        f"/ui/tasks/{dead}",
    )
    for path in pages:
        _says_broker_unreachable(client.http.get(path), path)
    actions = (
        (f"/ui/tasks/{pending.id}/cancel", {}),
        (f"/ui/dead-letters/{dead}/redrive", {}),
        (f"/ui/dead-letters/{dead}/purge", {"confirm": "yes"}),
        ("/ui/dead-letters/redrive-all", {"capability": "demo.slow"}),
        ("/ui/dead-letters/purge-all", {"capability": "demo.slow", "confirm": "yes"}),
    )
    for path, form in actions:
        text = _says_broker_unreachable(client.post_form(path, form), path)
        assert "Nothing was changed (or it is unknown whether it was)" in text, path

    # the try-it form shows the API's answer: 503 BROKER_UNAVAILABLE, nothing queued
    call = client.post_form("/ui/capabilities/demo.echo/call", {"input": '{"text": "b"}'})
    assert call.status_code == 503, call.text
    assert "Answer: HTTP 503" in _text(call.text)
    assert "BROKER_UNAVAILABLE: Redis broker" in _text(call.text)

    log = stream.getvalue()
    assert "Traceback" not in log
    lines = [json.loads(line) for line in log.splitlines()]
    warned = [line for line in lines if line["event"] == "console_broker_unreachable"]
    assert len(warned) == len(pages) + len(actions), warned
    assert {line["level"] for line in warned} == {"warning"}
    assert not [line for line in lines if line["level"] in ("error", "critical")], lines


def test_the_overview_says_the_queue_is_unknown_while_the_broker_is_down(
    redis_console: ConsoleClient, redis_server_aof: RedisServer
) -> None:
    client = redis_console
    _dead_letter(client.services.broker)
    before = _text(client.http.get("/ui").text)
    assert "Dead letters: 1" in before
    assert "Longest wait for a worker: 0 s" in before

    redis_server_aof.stop()
    wait_for_outage(client.http)
    page = client.http.get("/ui")
    assert page.status_code == 200, page.text
    text = _text(page.text)
    unknown = "unknown (broker unreachable)"
    assert (
        f"Running now: {unknown} · Longest wait for a worker: {unknown} · Dead letters: {unknown}"
    ) in text
    assert f"Pending tasks: {unknown}." in text
    assert 'class="queue-row"' not in page.text  # no per-capability zeros either
    assert "broker unreachable" in text  # the health problem
