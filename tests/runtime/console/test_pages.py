"""What the console's pages show and what its try-it form does (live server, memory
broker, the fixture worker on a thread where a task must run)."""

from __future__ import annotations

import datetime as dt
import html
import re
import threading
import time
from typing import TYPE_CHECKING

from crank.runtime.brokers.contract import ClaimOptions, TaskQuery, TaskSpec
from crank.runtime.concurrency import CallAdmission
from crank.runtime.worker_reports import WorkerHealth

from .conftest import forms_of

if TYPE_CHECKING:
    from collections.abc import Callable

    import httpx
    import pytest

    from crank.runtime.brokers.contract import Broker

    from .conftest import ConsoleClient, InlineWorker


def _text(page: str) -> str:
    """The page's text, tags dropped and whitespace folded (what a reader sees)."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())


def _row(page: str, attribute: str, value: str) -> str:
    found = re.search(rf'<tr[^>]*{attribute}="{re.escape(value)}"[^>]*>(.*?)</tr>', page, re.S)
    assert found is not None, f"no row {attribute}={value!r}"
    return _text(found.group(1))


def _dead_letter(broker: Broker, capability: str = "demo.slow") -> str:
    record = broker.submit(TaskSpec(capability, {"seconds": 0}, max_attempts=1))
    [claim] = broker.claim(ClaimOptions("t", capabilities=(capability,)))
    broker.fail(claim, {"code": "BOOM", "message": "the model file is missing"}, retryable=False)
    return record.id


def test_overview_shows_queue_depth_per_capability_and_priority(
    console: Callable[..., ConsoleClient],
) -> None:
    client = console()
    broker = client.services.broker
    broker.submit_many(
        [
            TaskSpec("demo.echo", {"text": "a"}),
            TaskSpec("demo.echo", {"text": "b"}, priority=5),
            TaskSpec("demo.echo", {"text": "c"}, priority=6),
            TaskSpec("demo.slow", {"seconds": 0}, priority=-1),
        ]
    )
    _dead_letter(broker, "demo.count")
    page = client.http.get("/ui").text
    assert _row(page, "data-capability", "demo.echo") == (
        "demo.echo 3 priority 4 to 7: 2 priority 0: 1"
    )
    assert _row(page, "data-capability", "demo.slow") == "demo.slow 1 priority -1: 1"
    assert _row(page, "data-capability", "demo.summarize") == "demo.summarize 0"
    text = _text(page)
    assert "Dead letters: 1" in text
    # no worker process in this server: the pool says so, and readiness tells why
    assert "Worker processes: 0 healthy of 0" in text
    assert "No daily budget set" in text


def test_overview_says_how_many_pending_tasks_back_off(
    console: Callable[..., ConsoleClient],
) -> None:
    client = console(retry_s=600)
    broker = client.services.broker
    broker.submit_many([TaskSpec("demo.echo", {"text": str(i)}) for i in range(3)])
    for claim in broker.claim(ClaimOptions("t", capabilities=("demo.echo",), limit=2)):
        broker.fail(claim, {"code": "DOWN", "message": "the model server is down"}, retryable=True)
    page = client.http.get("/ui").text
    assert _row(page, "data-capability", "demo.echo") == (
        "demo.echo 3 (2 backing off) priority 0: 3"
    )
    assert _row(page, "data-capability", "demo.slow") == "demo.slow 0"


def test_overview_reloads_itself_only_when_asked(console: Callable[..., ConsoleClient]) -> None:
    client = console()
    assert 'http-equiv="refresh"' not in client.http.get("/ui").text
    assert '<meta http-equiv="refresh" content="5">' in client.http.get("/ui?refresh=1").text


def test_capability_page_shows_schemas_examples_and_a_labelled_form(
    console: Callable[..., ConsoleClient],
) -> None:
    client = console()
    listing = client.http.get("/ui/capabilities").text
    count_row = _row(listing, "data-capability", "demo.count")
    assert count_row.startswith("demo.count 1.0.0 http-fixture streaming")
    assert "Also called through: demo.legacy_echo" in _row(listing, "data-capability", "demo.echo")
    page = client.http.get("/ui/capabilities/demo.echo").text
    assert "<h1>demo.echo" in page
    assert '"maxLength": 200' in html.unescape(page)  # the input schema
    assert "hello" in _text(page)  # the example's name
    [form] = [f for f in forms_of(page) if f["action"] == "/ui/capabilities/demo.echo/call"]
    assert form["method"] == "post"
    assert set(form["fields"]) == {"csrf_token", "input", "run"}
    assert '<label for="input">' in page and '<textarea id="input" name="input"' in page
    # the form starts with the first example's input
    textarea = re.search(r"<textarea[^>]*>(.*?)</textarea>", page, re.S)
    assert textarea is not None and '"text": "hello"' in html.unescape(textarea.group(1))
    assert client.http.get("/ui/capabilities/no.such").status_code == 404


def test_a_capability_whose_worker_failed_to_load_says_so(
    console: Callable[..., ConsoleClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    client = console()
    failed = WorkerHealth("slowpoke", ("demo.slow",), "failed", "No module named 'numpy'")
    monkeypatch.setattr(
        client.services.status, "unavailable", lambda cap: failed if cap == "demo.slow" else None
    )
    listing = client.http.get("/ui/capabilities").text
    assert "worker failed" in _row(listing, "data-capability", "demo.slow")
    assert "worker failed" not in _row(listing, "data-capability", "demo.echo")
    page = _text(client.http.get("/ui/capabilities/demo.slow").text)
    assert (
        "Worker state failed its worker failed to load: No module named 'numpy'; "
        "calls answer 503 until it is fixed" in page
    )
    assert "Worker state" not in _text(client.http.get("/ui/capabilities/demo.echo").text)


def test_the_form_calls_the_capability_and_shows_the_answer(
    console: Callable[..., ConsoleClient], inline_worker_for: Callable[[Broker], InlineWorker]
) -> None:
    client = console()
    inline_worker_for(client.services.broker)
    page = client.post_form(
        "/ui/capabilities/demo.echo/call", {"input": '{"text": "from the form", "shout": true}'}
    )
    assert page.status_code == 200
    text = _text(page.text)
    assert "Answer: HTTP 200" in text
    assert '"text": "FROM THE FORM"' in html.unescape(page.text)
    # the call was a task of the caller "console", kept by the broker
    task_id = re.search(r'href="/ui/tasks/([0-9a-f]+)"', page.text)
    assert task_id is not None
    record = client.services.broker.get(task_id.group(1))
    assert record is not None and record.status == "succeeded"
    assert record.meta["caller"] == "console"
    # the form keeps what was sent
    assert "from the form" in html.unescape(page.text.split("<textarea", 1)[1])


def test_the_form_calls_past_max_concurrency_are_refused_as_the_api_refuses_them(
    console: Callable[..., ConsoleClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    client = console()
    monkeypatch.setattr(client.services, "admission", CallAdmission({"demo.echo": 1}))
    held = client.services.admission.admit("demo.echo")  # another caller's call
    api = client.http.post("/v1/capabilities/demo.echo", json={"text": "a"})
    assert api.status_code == 429 and api.json()["error"]["code"] == "CONCURRENCY_LIMIT"
    page = client.post_form("/ui/capabilities/demo.echo/call", {"input": '{"text": "a"}'})
    assert page.status_code == 429
    assert "Answer: HTTP 429 CONCURRENCY_LIMIT" in _text(page.text)
    assert not client.services.broker.list_tasks(TaskQuery(limit=10)).tasks  # nothing queued
    # queueing it is POST /v1/tasks: the task waits for a slot
    queued = client.post_form(
        "/ui/capabilities/demo.echo/call", {"input": '{"text": "a"}', "run": "queue"}
    )
    assert queued.status_code == 303
    held.release()
    # the console's refused call held no slot of its own: one call is admitted again
    client.services.admission.admit("demo.echo").release()


def test_a_call_cancelled_while_the_form_waits_is_a_409_as_the_api_answers(
    console: Callable[..., ConsoleClient],
) -> None:
    client = console()
    broker = client.services.broker
    answers: list[httpx.Response] = []
    form = threading.Thread(
        target=lambda: answers.append(
            client.post_form("/ui/capabilities/demo.echo/call", {"input": '{"text": "a"}'})
        )
    )
    form.start()
    deadline = time.monotonic() + 30
    while not (found := broker.list_tasks(TaskQuery(limit=1)).tasks):
        assert time.monotonic() < deadline, "the form's call was never queued"
        time.sleep(0.01)
    broker.cancel(found[0].id)  # from another tab, or DELETE /v1/tasks/{id}
    form.join(30)
    [page] = answers
    assert "Answer: HTTP 409" in _text(page.text)
    assert "cancelled" in _text(page.text)


def test_the_form_shows_the_apis_refusals(console: Callable[..., ConsoleClient]) -> None:
    client = console()
    not_json = client.post_form("/ui/capabilities/demo.echo/call", {"input": "{text: 1}"})
    assert not_json.status_code == 400
    assert "INVALID_INPUT: the input is not JSON" in _text(not_json.text)
    invalid = client.post_form("/ui/capabilities/demo.echo/call", {"input": '{"text": 5}'})
    assert invalid.status_code == 400
    assert "$.text" in invalid.text and "Answer: HTTP 400" in _text(invalid.text)
    lone = client.post_form("/ui/capabilities/demo.echo/call", {"input": '{"text": "\\ud800"}'})
    assert lone.status_code == 400
    assert (
        "INVALID_INPUT: the input holds a lone UTF-16 surrogate ('\\ud800') at $.text"
    ) in html.unescape(_text(lone.text))
    nan = client.post_form("/ui/capabilities/demo.echo/call", {"input": '{"text": NaN}'})
    assert nan.status_code == 400
    assert "the input is not JSON: NaN is not a JSON value (RFC 8259 has no NaN" in _text(nan.text)
    # the whole error body, as the API answers it: hint and JSON paths too
    assert '"path": "$.text"' in html.unescape(lone.text)
    assert '"hint": "send a JSON object"' in html.unescape(not_json.text)
    deep = client.post_form("/ui/capabilities/demo.echo/call", {"input": "[" * 5000 + "]" * 5000})
    assert deep.status_code == 400
    assert "INVALID_INPUT: the input nests too deeply" in _text(deep.text)
    assert '"hint": "send a flatter JSON document"' in html.unescape(deep.text)
    assert client.services.broker.stats().pending == {}


def test_the_form_runs_only_the_actions_it_offers(console: Callable[..., ConsoleClient]) -> None:
    # an unknown "run" was taken for a call
    client = console()
    for run in ("bogus", ""):
        answer = client.post_form(
            "/ui/capabilities/demo.echo/call", {"input": '{"text": "x"}', "run": run}
        )
        assert answer.status_code == 400 and "Unknown action" in answer.text, run
    assert client.services.broker.stats().pending == {}


def test_queue_from_the_form_opens_the_tasks_page(console: Callable[..., ConsoleClient]) -> None:
    client = console()
    answer = client.post_form(
        "/ui/capabilities/demo.echo/call", {"input": '{"text": "later"}', "run": "queue"}
    )
    assert answer.status_code == 303
    location = answer.headers["location"]
    assert location.startswith("/ui/tasks/")
    page = client.http.get(location)
    text = _text(page.text)
    assert "Queued task" in text  # the flash message
    assert "Status pending" in text and "Caller console" in text
    assert '"text": "later"' in html.unescape(page.text)


def test_task_page_shows_input_result_attempts_trace_and_events(
    console: Callable[..., ConsoleClient],
) -> None:
    client = console()
    broker = client.services.broker
    trace = "0af7651916cd43dd8448eb211c80319c"
    submitted = client.http.post(
        "/v1/tasks",
        json={"capability": "demo.count", "input": {"n": 3}},
        headers={"traceparent": f"00-{trace}-b7ad6b7169203331-01", "X-Crank-Caller": "billing"},
    )
    task_id = submitted.json()["id"]
    # the worker's part, played on the broker: three events, then the result
    [claim] = broker.claim(ClaimOptions("w", capabilities=("demo.count",)))
    broker.publish_events(task_id, [{"i": 1}, {"i": 2}, {"i": 3}])
    broker.ack(claim, [{"i": 1}, {"i": 2}, {"i": 3}])
    page = client.http.get(f"/ui/tasks/{task_id}").text
    text = _text(page)
    assert "Status succeeded" in text and "Attempts 1 of at most 3" in text
    assert f"Trace id {trace}" in text and "Caller billing" in text
    assert "Events (3)" in text
    events = re.findall(r'<li value="(\d+)"><code>(.*?)</code>', page)
    assert [(n, html.unescape(e)) for n, e in events] == [
        ("1", '{"i": 1}'),
        ("2", '{"i": 2}'),
        ("3", '{"i": 3}'),
    ]
    assert '"n": 3' in html.unescape(page)  # the input


def test_a_deprecated_ids_page_counts_calls_per_caller_and_the_days_to_its_sunset(
    console: Callable[..., ConsoleClient], inline_worker_for: Callable[[Broker], InlineWorker]
) -> None:
    client = console(today=dt.date(2027, 1, 1))
    inline_worker_for(client.services.broker)
    for caller, times in (("billing", 2), ("reports", 1), (None, 1)):
        headers = {} if caller is None else {"X-Crank-Caller": caller}
        for _ in range(times):
            answer = client.http.post(
                "/v1/capabilities/demo.legacy_echo", json={"text": "old"}, headers=headers
            )
            assert answer.status_code == 200, answer.text
    page = client.http.get("/ui/deprecated").text
    assert _row(page, "data-caller", "billing") == "billing 2 0"
    assert _row(page, "data-caller", "reports") == "reports 1 0"
    assert _row(page, "data-caller", "unknown") == "unknown 1 0"
    sunset = client.services.router.deprecated("demo.legacy_echo")
    assert sunset is not None
    days = (sunset.sunset - dt.date(2027, 1, 1)).days
    assert f"{days} day(s) left" in _text(page)
    assert "Calls per caller (4 in all)" in _text(page)


def test_a_deprecated_id_past_its_sunset_shows_the_refused_callers(
    console: Callable[..., ConsoleClient],
) -> None:
    client = console()
    answer = client.http.post(
        "/v1/capabilities/demo.retired", json={"text": "old"}, headers={"X-Crank-Caller": "late"}
    )
    assert answer.status_code == 410
    page = client.http.get("/ui/deprecated").text
    section = page[page.index('data-deprecated="demo.retired"') :]
    assert _row(section, "data-caller", "late") == "late 0 1"
    assert "calls are refused (HTTP 410)" in _text(section)


def test_a_deprecated_ids_page_says_where_its_calls_go_not_that_nothing_serves_it(
    console: Callable[..., ConsoleClient],
) -> None:
    client = console()
    # the API routes the id to its successor: the console does not call it unknown
    routed = client.http.get("/ui/capabilities/demo.legacy_echo")
    assert routed.status_code == 303
    assert routed.headers["location"] == "/ui/deprecated"
    assert (
        "demo.legacy_echo is a deprecated id: calls to it are routed to demo.echo until "
        "its sunset on 2099-12-31." in _text(client.http.get("/ui/deprecated").text)
    )
    retired = client.http.get("/ui/capabilities/demo.retired")
    assert retired.headers["location"] == "/ui/deprecated"
    assert (
        "demo.retired was retired after its sunset on 2020-01-31: calls to it answer 410. "
        "Call demo.echo instead." in _text(client.http.get("/ui/deprecated").text)
    )
    unknown = client.http.get("/ui/capabilities/demo.nothing")
    assert unknown.status_code == 404
    assert "No installed worker serves the capability 'demo.nothing'" in _text(unknown.text)


def test_dead_letters_page_lists_them_with_their_error(
    console: Callable[..., ConsoleClient],
) -> None:
    client = console()
    broker = client.services.broker
    first = _dead_letter(broker, "demo.slow")
    time.sleep(0.01)  # distinct update times, so "newest first" is one order
    second = _dead_letter(broker, "demo.count")
    page = client.http.get("/ui/dead-letters").text
    rows = re.findall(r'<tr class="dead-letter" data-task="([0-9a-f]+)"', page)
    assert rows == [second, first]
    assert "BOOM the model file is missing" in _row(page, "data-task", first)
    only = client.http.get("/ui/dead-letters?capability=demo.slow").text
    assert re.findall(r'<tr class="dead-letter" data-task="([0-9a-f]+)"', only) == [first]


def test_dead_letters_of_a_capability_no_longer_served_can_be_chosen(
    console: Callable[..., ConsoleClient],
) -> None:
    # a worker removed since: its dead letters stay in the broker, to redrive or purge
    client = console()
    broker = client.services.broker
    gone = _dead_letter(broker, "old.resize")
    listing = client.http.get("/ui/dead-letters").text
    cell = '<a href="/ui/dead-letters?capability=old.resize"'
    assert cell in listing.split(f'data-task="{gone}"')[1]
    chosen = client.http.get("/ui/dead-letters?capability=old.resize").text
    assert '<option value="old.resize" selected>' in chosen
    assert '<option value="" selected>' not in chosen
    assert "Purge all of old.resize" in chosen
    tasks = client.http.get("/ui/tasks?capability=old.resize").text
    assert _listed(tasks) == [gone]
    assert '<option value="old.resize" selected>' in tasks


def test_a_task_whose_result_holds_a_lone_surrogate_shows_it_escaped(
    console: Callable[..., ConsoleClient],
) -> None:
    """A producer on the broker is not behind the API's check of the body: its input and
    the result may hold a lone UTF-16 surrogate, which no UTF-8 page can carry."""
    client = console()
    broker = client.services.broker
    task = broker.submit(TaskSpec("demo.echo", {"text": "in\udc00"}))
    [claim] = broker.claim(ClaimOptions("w", capabilities=("demo.echo",)))
    broker.ack(claim, {"text": "out\ud800"})
    answer = client.http.get(f"/ui/tasks/{task.id}")
    assert answer.status_code == 200, answer.text
    shown = html.unescape(answer.text)
    assert '"text": "in\\udc00"' in shown and '"text": "out\\ud800"' in shown


def test_an_unknown_task_is_a_404_page(console: Callable[..., ConsoleClient]) -> None:
    client = console()
    answer = client.http.get("/ui/tasks/0123456789abcdef")
    assert answer.status_code == 404
    assert "No such task" in answer.text and "What to do:" in answer.text


def _listed(page: str) -> list[str]:
    return re.findall(r'<tr class="task" data-task="([0-9a-f]+)"', page)


def test_task_search_filters_by_status_capability_and_caller(
    console: Callable[..., ConsoleClient],
) -> None:
    client = console()
    broker = client.services.broker
    echo = broker.submit(TaskSpec("demo.echo", {"text": "a"}, meta={"caller": "billing"}))
    slow = broker.submit(TaskSpec("demo.slow", {"seconds": 0}, meta={"caller": "reports"}))
    dead = _dead_letter(broker, "demo.count")
    assert _listed(client.http.get("/ui/tasks").text) == [dead, slow.id, echo.id]
    assert _listed(client.http.get("/ui/tasks?status=dead").text) == [dead]
    assert _listed(client.http.get("/ui/tasks?capability=demo.slow").text) == [slow.id]
    by_caller = client.http.get("/ui/tasks?caller=billing&status=pending").text
    assert _listed(by_caller) == [echo.id]
    assert _row(by_caller, "data-task", echo.id).startswith(f"{echo.id} demo.echo pending billing")
    # the form shows the filters it was sent
    assert '<option value="pending" selected>' in by_caller
    assert 'name="caller" value="billing"' in by_caller


def test_task_search_pages_through_the_broker_newest_first(
    console: Callable[..., ConsoleClient],
) -> None:
    client = console()
    records = client.services.broker.submit_many(
        [TaskSpec("demo.echo", {"text": str(i)}) for i in range(60)]
    )
    newest_first = [r.id for r in reversed(records)]
    first = client.http.get("/ui/tasks?capability=demo.echo").text
    assert _listed(first) == newest_first[:50]
    older = re.search(r'<a href="([^"]+)" rel="next">Older tasks</a>', first)
    assert older is not None
    second = client.http.get(html.unescape(older.group(1))).text
    assert _listed(second) == newest_first[50:]
    assert 'rel="next"' not in second
    assert '<a href="/ui/tasks?capability=demo.echo">Newest</a>' in second


def test_task_search_says_what_is_wrong_with_a_filter(
    console: Callable[..., ConsoleClient],
) -> None:
    client = console()
    for query, message in (
        ("status=finished", "status 'finished' is not one of pending, running"),
        ("caller=no%20spaces", "caller 'no spaces' is not a caller name"),
        ("cursor=abc", "the page link is damaged"),
    ):
        answer = client.http.get(f"/ui/tasks?{query}")
        assert answer.status_code == 400, query
        assert message in _text(answer.text), query


def test_a_filter_given_twice_is_refused_not_half_applied(
    console: Callable[..., ConsoleClient],
) -> None:
    """The API answers 400 for a repeated parameter; the console must not list by one of
    the values (``status=dead&status=failed`` listed no task although dead ones exist)."""
    client = console()
    _dead_letter(client.services.broker)
    for path, message in (
        ("/ui/tasks?status=dead&status=failed", "status is given 2 times"),
        ("/ui/tasks?capability=demo.slow&capability=demo.echo", "capability is given 2 times"),
        ("/ui/tasks?caller=a&caller=b&caller=c", "caller is given 3 times"),
        ("/ui/tasks?id=0123456789abcdef&id=fedcba9876543210", "id is given 2 times"),
        ("/ui/dead-letters?capability=demo.slow&capability=demo.count", "capability is given"),
    ):
        answer = client.http.get(path)
        assert answer.status_code == 400, (path, answer.status_code)
        assert message in _text(answer.text), path
        assert not _listed(answer.text) and 'class="dead-letter"' not in answer.text, path


def test_task_search_opens_a_task_by_its_id(console: Callable[..., ConsoleClient]) -> None:
    client = console()
    record = client.services.broker.submit(TaskSpec("demo.echo", {"text": "find me"}))
    answer = client.http.get(f"/ui/tasks?id={record.id}")
    assert (answer.status_code, answer.headers["location"]) == (303, f"/ui/tasks/{record.id}")
    assert client.http.get("/ui/tasks?id=../../etc").status_code == 404
