"""The console in a real browser: headless Chromium (system package) driven by Selenium,
against ``crank run`` with a real worker process and an API token.

One walk through the pages, the way an operator goes: log in, see the worker, call a
capability from its form, see who still calls a deprecated id, find tasks, cancel a
pending task (it never runs), redrive a dead letter once its cause is gone (it runs
again and succeeds). Every step
waits for the page state it needs (WebDriverWait), never for a fixed time.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import httpx
import pytest

from crank.runtime.brokers.contract import ClaimOptions, TaskSpec

from ..http.conftest import wait_for_outage
from .conftest import TOKEN

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from ..conftest import RedisServer
    from .browser import Browser
    from .conftest import ConsoleClient, CrankRun

pytestmark = [
    pytest.mark.slow,
    pytest.mark.requires(
        "exe:chromium",
        "exe:chromedriver",
        "selenium",
        hint="bash scripts/setup-system.sh (chromium, chromium-driver); pip install selenium",
    ),
]


@pytest.fixture
def open_browser() -> Iterator[Callable[[str], Browser]]:
    """``open_browser(base_url)``: a headless Chromium tab, closed after the test."""
    from .browser import Browser, start_chromium

    opened: list[Browser] = []

    def start(base_url: str) -> Browser:
        browser = Browser(start_chromium(), base_url)
        opened.append(browser)
        return browser

    yield start
    for browser in opened:
        browser.close()


def _api(run: CrankRun, caller: str | None = None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    if caller is not None:
        headers["X-Crank-Caller"] = caller
    return httpx.Client(base_url=run.url, headers=headers, timeout=60)


def _ended(api: httpx.Client, run: CrankRun, task_id: str) -> str:
    def status() -> str | None:
        found: str = api.get(f"/v1/tasks/{task_id}").json()["status"]
        return found if found in ("succeeded", "failed", "dead", "cancelled") else None

    ended: str = run.wait_until(status, what=f"task {task_id} to end")
    return ended


def test_an_operator_walks_the_console(
    console_run: Callable[..., CrankRun], open_browser: Callable[[str], Browser], tmp_path: Path
) -> None:
    # a relative broker path: the footer of every page (and screenshot) names the broker
    run = console_run("--broker", "sqlite:///queue.db", env={"CRANK_API_TOKEN": TOKEN})
    browser = open_browser(run.url)

    # -- log in: every page sends the browser to the login form first ---------------------
    browser.open("/ui/capabilities")
    assert browser.wait_for_path("/ui/login?next=") == "/ui/login?next=%2Fui%2Fcapabilities"
    browser.snap("login")
    browser.type("#token", "not the token")
    browser.click("form[action='/ui/login'] button[type=submit]")
    assert "not the server's API token" in browser.text("#login-error")
    browser.type("#token", TOKEN)
    browser.click("form[action='/ui/login'] button[type=submit]")
    browser.wait_for_path("/ui/capabilities")
    assert "Logged in." in browser.text(".flash")

    # -- overview: the worker process is up and serving -----------------------------------
    browser.open("/ui")
    browser.wait_for_text("#workers-h + p", "1 healthy of 1")
    worker = browser.text("tr.worker[data-worker='console-fixture']").split()
    assert worker[:4] == ["console-fixture", "ready", "yes", "1"], worker
    browser.snap("overview")

    # -- capabilities: call one from its form and read the answer -------------------------
    browser.open("/ui/capabilities")
    browser.click("a[href='/ui/capabilities/ops.echo']")
    browser.wait_for_path("/ui/capabilities/ops.echo")
    assert json.loads(browser.find("#input").get_attribute("value") or "") == {
        "text": "hello operator"
    }
    browser.click("a[href='/ui/capabilities/ops.echo?example=1#input']")  # the shout example
    browser.wait_for_path("/ui/capabilities/ops.echo?example=1")
    browser.click("button[name=run][value=call]")
    assert browser.wait_for_text("#answer-h", "Answer: HTTP 200")
    assert json.loads(browser.text(".answer pre.json")) == {"text": "HELLO OPERATOR"}
    browser.snap("capability", show=".answer")

    # -- deprecated ids: who still calls the old id ----------------------------------------
    with _api(run, caller="billing-service") as billing, _api(run) as anonymous:
        for client in (billing, billing, anonymous):
            answer = client.post("/v1/capabilities/ops.legacy_echo", json={"text": "old"})
            assert answer.status_code == 200 and answer.headers["deprecation"]
    browser.open("/ui/deprecated")
    row = browser.text("tr.caller[data-caller='billing-service']")
    assert row.split() == ["billing-service", "2", "0"]
    assert browser.text("tr.caller[data-caller='unknown']").split() == ["unknown", "1", "0"]
    assert "day(s) left" in browser.text("[data-deprecated='ops.legacy_echo'] .sunset")
    browser.snap("deprecated")

    # -- tasks: the console's own call is there, as the caller "console" -------------------
    browser.open("/ui/tasks")
    browser.choose("#capability", "ops.echo")
    browser.type("#caller", "console")
    browser.click("form[role=search] button[type=submit]")
    browser.wait_for_path("/ui/tasks?")
    assert browser.count("tr.task") == 1
    browser.click("tr.task th a")
    browser.wait_for_path("/ui/tasks/")
    assert browser.text(".task-status") == "succeeded"
    assert '"shout": true' in browser.text("pre.json[aria-label=Input]")
    browser.snap("task")
    browser.open("/ui/tasks")
    browser.find("tr.task")
    browser.snap("tasks")

    # -- cancel: a task waiting behind a busy worker is cancelled and never runs ------------
    gate, mark = tmp_path / "gate", tmp_path / "cancelled-ran"
    with _api(run) as api:
        busy = api.post("/v1/tasks", json={"capability": "ops.hold", "input": {"gate": str(gate)}})
        busy_id = busy.json()["id"]
        run.wait_until(
            lambda: api.get(f"/v1/tasks/{busy_id}").json()["status"] == "running",
            what="the only worker to be busy",
        )
        waiting = api.post(
            "/v1/tasks", json={"capability": "ops.mark", "input": {"mark": str(mark)}}
        )
        waiting_id = waiting.json()["id"]
    browser.open(f"/ui/tasks/{waiting_id}")
    assert browser.text(".task-status") == "pending"
    browser.click("#cancel-task")
    assert "will never run" in browser.wait_for_text(".flash", "cancelled")
    assert browser.text(".task-status") == "cancelled"
    assert browser.count("#cancel-task") == 0  # nothing left to cancel
    gate.write_text("open")
    with _api(run) as api:
        assert _ended(api, run, busy_id) == "succeeded"
        after_mark = tmp_path / "after-ran"
        after = api.post(
            "/v1/tasks", json={"capability": "ops.mark", "input": {"mark": str(after_mark)}}
        )
        assert _ended(api, run, after.json()["id"]) == "succeeded"
        assert _ended(api, run, waiting_id) == "cancelled"
    assert after_mark.exists() and not mark.exists()  # the worker went past it: it never ran

    # -- dead letters: a task that failed for want of its index file -----------------------
    index = tmp_path / "index.txt"
    with _api(run, caller="nightly-job") as api:
        queued = api.post(
            "/v1/tasks", json={"capability": "ops.reindex", "input": {"index": str(index)}}
        )
        dead = queued.json()["id"]
        assert _ended(api, run, dead) == "dead"
    browser.open("/ui/dead-letters")
    row = browser.text(f"tr.dead-letter[data-task='{dead}']")
    assert "the index file index.txt is missing" in row
    browser.snap("dead-letters")
    # its cause gone, the dead letter is redriven from its row: it runs again and succeeds
    index.write_text("alpha beta gamma")
    browser.click(f"tr.dead-letter[data-task='{dead}'] button.redrive")
    assert "back on the queue" in browser.wait_for_text(".flash", dead)
    with _api(run) as api:
        assert _ended(api, run, dead) == "succeeded"
    browser.open(f"/ui/tasks/{dead}")
    assert browser.text(".task-status") == "succeeded"
    assert json.loads(browser.text("pre.json[aria-label=Result]")) == {"entries": 3}
    browser.open("/ui/dead-letters")
    assert browser.count(f"tr.dead-letter[data-task='{dead}']") == 0

    # -- logging out ends it ------------------------------------------------------------------
    browser.click(".logout button")
    browser.wait_for_path("/ui/login")
    browser.open("/ui")
    browser.wait_for_path("/ui/login?next=")


def test_an_operator_sees_a_broker_outage_as_such(
    redis_console: ConsoleClient,
    redis_server_aof: RedisServer,
    open_browser: Callable[[str], Browser],
) -> None:
    """Redis stops: the overview says the queue is unknown (no reassuring zeros), the
    task pages say the broker is unreachable and what to do, and a dead letter's redrive
    says nothing was (knowingly) done."""
    broker = redis_console.services.broker
    record = broker.submit(TaskSpec("demo.slow", {"seconds": 0}, max_attempts=1))
    [claim] = broker.claim(ClaimOptions("t", capabilities=("demo.slow",), block_s=10))
    broker.fail(claim, {"code": "BOOM", "message": "no model"}, retryable=False)
    browser = open_browser(redis_console.url)
    browser.open("/ui/dead-letters")
    browser.find(f"tr.dead-letter[data-task='{record.id}'] button.redrive")  # the form, loaded

    redis_server_aof.stop()
    wait_for_outage(redis_console.http)
    first_tab = browser.driver.current_window_handle
    browser.driver.switch_to.new_window("tab")
    browser.open("/ui")
    queue = browser.wait_for_text("#queue-h + p", "Dead letters: unknown (broker unreachable)")
    assert "Running now: unknown (broker unreachable)" in queue
    assert "Pending tasks: unknown (broker unreachable)." in browser.text("#queue-h ~ p.error")
    browser.open("/ui/tasks")
    browser.wait_for_text("h1", "Broker unreachable")
    assert "Redis broker redis://127.0.0.1:" in browser.text("p.error")
    # the dead letter's form, loaded before the outage, sent during it
    browser.driver.switch_to.window(first_tab)
    browser.click(f"tr.dead-letter[data-task='{record.id}'] button.redrive")
    browser.wait_for_text("h1", "Broker unreachable")
    assert "Nothing was changed" in browser.text("p.error")
    assert "check that redis-server runs" in browser.text("p.hint")
