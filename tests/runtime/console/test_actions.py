"""The console's task actions in-process (a real server, the memory broker): cancel from
a task's page, redrive and purge dead letters one by one or all of a capability, and
every refusal. (Login, CSRF and read-only for these routes: test_security.py checks
every console route.)"""

from __future__ import annotations

import io
import json
from typing import TYPE_CHECKING

from crank.runtime.brokers.contract import ClaimOptions, TaskSpec
from crank.runtime.logs import configure_logging

from .conftest import forms_of

if TYPE_CHECKING:
    from collections.abc import Callable

    import pytest

    from .conftest import ConsoleClient


def dead_letter(client: ConsoleClient, capability: str = "demo.slow") -> str:
    broker = client.services.broker
    task = broker.submit(TaskSpec(capability, {"seconds": 0}, max_attempts=1))
    [claim] = broker.claim(ClaimOptions("t", capabilities=(capability,), block_s=5.0))
    broker.fail(claim, {"code": "BOOM", "message": "kaput"}, retryable=False)
    return task.id


def flash_after(client: ConsoleClient, answer: object) -> str:
    """Follow an action's 303 and read the message the page shows."""
    location = answer.headers["location"]  # type: ignore[attr-defined]
    page = client.http.get(location).text
    start = page.index('class="flash"')
    return page[page.index(">", start) + 1 : page.index("</p>", start)]


def test_cancel_a_pending_task_from_its_page(console: Callable[..., ConsoleClient]) -> None:
    client = console()
    broker = client.services.broker
    task = broker.submit(TaskSpec("demo.echo", {"text": "never"}))
    page = client.http.get(f"/ui/tasks/{task.id}").text
    actions = [f["action"] for f in forms_of(page) if f["method"] == "post"]
    assert f"/ui/tasks/{task.id}/cancel" in actions
    answer = client.post_form(f"/ui/tasks/{task.id}/cancel", {})
    assert answer.status_code == 303
    assert answer.headers["location"] == f"/ui/tasks/{task.id}"
    assert "will never run" in flash_after(client, answer)
    assert broker.get(task.id).status == "cancelled"
    assert broker.claim(ClaimOptions("w", block_s=0.2)) == []
    # a finished task has no cancel button, and a late form changes nothing
    page = client.http.get(f"/ui/tasks/{task.id}").text
    assert f"/ui/tasks/{task.id}/cancel" not in page
    again = client.post_form(f"/ui/tasks/{task.id}/cancel", {})
    assert "had ended (cancelled)" in flash_after(client, again)
    missing = client.post_form("/ui/tasks/no-such-task/cancel", {})
    assert missing.status_code == 404 and "No such task" in missing.text


def test_redrive_and_purge_one_dead_letter(console: Callable[..., ConsoleClient]) -> None:
    client = console()
    broker = client.services.broker
    first, second = dead_letter(client), dead_letter(client)
    listed = client.http.get("/ui/dead-letters?capability=demo.slow").text
    actions = {f["action"] for f in forms_of(listed) if f["method"] == "post"}
    assert {f"/ui/dead-letters/{first}/redrive", f"/ui/dead-letters/{first}/purge"} <= actions
    assert {"/ui/dead-letters/redrive-all", "/ui/dead-letters/purge-all"} <= actions

    back = {"back": "dead-letters", "capability": "demo.slow"}
    answer = client.post_form(f"/ui/dead-letters/{first}/redrive", back)
    assert answer.headers["location"] == "/ui/dead-letters?capability=demo.slow"
    assert "back on the queue" in flash_after(client, answer)
    again = broker.get(first)
    assert (again.status, again.attempts, again.error) == ("pending", 0, None)

    unticked = client.post_form(f"/ui/dead-letters/{second}/purge", back)
    assert unticked.status_code == 400 and "Not confirmed" in unticked.text
    assert broker.get(second).status == "dead"
    purged = client.post_form(f"/ui/dead-letters/{second}/purge", {"confirm": "yes"})
    assert purged.headers["location"] == "/ui/dead-letters?capability=demo.slow"
    assert "deleted for good" in flash_after(client, purged)
    assert broker.get(second) is None

    not_dead = client.post_form(f"/ui/dead-letters/{first}/redrive", {})
    assert "is not a dead letter (it is pending)" in flash_after(client, not_dead)


def test_redrive_and_purge_all_of_a_capability(console: Callable[..., ConsoleClient]) -> None:
    client = console()
    broker = client.services.broker
    slow = [dead_letter(client) for _ in range(2)]
    other = dead_letter(client, "demo.echo")
    page = client.http.get("/ui/dead-letters").text
    assert "Choose a capability" in page  # no bulk form without one
    answer = client.post_form("/ui/dead-letters/redrive-all", {"capability": "demo.slow"})
    assert "2 dead letter(s) of demo.slow are back on the queue" in flash_after(client, answer)
    assert {broker.get(t).status for t in slow} == {"pending"}
    assert broker.get(other).status == "dead"

    unticked = client.post_form("/ui/dead-letters/purge-all", {"capability": "demo.echo"})
    assert unticked.status_code == 400
    purged = client.post_form(
        "/ui/dead-letters/purge-all", {"capability": "demo.echo", "confirm": "yes"}
    )
    assert "1 dead letter(s) of demo.echo are deleted for good" in flash_after(client, purged)
    assert broker.get(other) is None
    for bad in ("", "no spaces please", "x" * 201):
        refused = client.post_form("/ui/dead-letters/redrive-all", {"capability": bad})
        assert refused.status_code == 400 and "No capability" in refused.text, bad


def test_a_form_that_names_a_field_twice_does_nothing(
    console: Callable[..., ConsoleClient],
) -> None:
    # the last of two capabilities was the one acted on: a bulk action must act on the
    # one capability its form names, or on none
    client = console()
    broker = client.services.broker
    slow = dead_letter(client)
    body = {"csrf_token": client.csrf(), "capability": ["demo.echo", "demo.slow"]}
    refused = client.http.post("/ui/dead-letters/redrive-all", data=body)
    assert refused.status_code == 400
    assert "names capability more than once" in refused.text
    assert broker.get(slow).status == "dead"
    token = client.csrf()
    twice = {"csrf_token": [token, token], "capability": "demo.slow"}
    assert client.http.post("/ui/dead-letters/redrive-all", data=twice).status_code == 400
    assert broker.get(slow).status == "dead"


def test_a_bug_in_an_action_is_a_500_not_a_broker_outage(
    console: Callable[..., ConsoleClient], monkeypatch: pytest.MonkeyPatch, logging_restored: None
) -> None:
    # Every action turned any exception into "Broker unreachable" (503): a bug in crank
    # or a plugin read as an outage, and its traceback was lost. A stand-in for such a
    # bug: the broker's redrive raises a KeyError (not a BrokerError).
    client = console()
    dead = dead_letter(client)
    stream = io.StringIO()
    configure_logging("prod", stream=stream)

    def broken(task_id: str) -> None:
        raise KeyError("a bug")

    monkeypatch.setattr(client.services.broker, "redrive", broken)
    answer = client.post_form(f"/ui/dead-letters/{dead}/redrive", {})
    assert answer.status_code == 500, answer.text
    assert "Broker unreachable" not in answer.text
    assert answer.json()["error"]["code"] == "INTERNAL"
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    [logged] = [line for line in lines if line["event"] == "unhandled_error"]
    assert logged["level"] == "error" and "KeyError: 'a bug'" in logged["exception"]
    assert not [line for line in lines if line["event"] == "console_broker_unreachable"]
