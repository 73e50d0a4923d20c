"""The console's security: login with the API token, the session cookie, CSRF, the
read-only and off modes. Every route of the console is checked, not a sample: the
routes are read from the console's own route table."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from crank.runtime.brokers.contract import ClaimOptions, TaskSpec
from crank.runtime.console import PUBLIC_PATHS, console_routes
from crank.runtime.console.session import SessionSigner

from .conftest import TOKEN, forms_of

if TYPE_CHECKING:
    from collections.abc import Callable

    import pytest

    from .conftest import ConsoleClient


def _routes(client: ConsoleClient) -> list[tuple[str, str]]:
    """(method, path template) of every console route."""
    return [
        (method, route.path)
        for route in console_routes(client.services)
        for method in sorted(route.methods or ())
        if method != "HEAD"
    ]


def _fill(template: str, task_id: str) -> str:
    return template.replace("{capability_id}", "demo.echo").replace("{task_id}", task_id)


def _pending_and_dead(client: ConsoleClient) -> tuple[str, str]:
    """A pending task and a dead letter in the broker."""
    broker = client.services.broker
    dead = broker.submit(TaskSpec("demo.slow", {"seconds": 0}, max_attempts=1))
    [claim] = broker.claim(ClaimOptions("t", capabilities=("demo.slow",)))
    broker.fail(claim, {"code": "BOOM", "message": "kaput"}, retryable=False)
    pending = broker.submit(TaskSpec("demo.echo", {"text": "still waiting"}))
    return pending.id, dead.id


def test_with_a_token_every_page_and_action_is_refused_without_logging_in(
    console: Callable[..., ConsoleClient],
) -> None:
    client = console(token=TOKEN)
    pending, dead = _pending_and_dead(client)
    routes = _routes(client)
    assert ("GET", "/ui") in routes and ("POST", "/ui/capabilities/{capability_id}/call") in routes
    checked = 0
    for method, template in routes:
        if template in PUBLIC_PATHS:
            continue
        path = _fill(template, dead if "dead-letters" in template else pending)
        if method == "GET":
            answer = client.http.get(path)
            assert answer.status_code == 303, (path, answer.status_code)
            assert answer.headers["location"].startswith("/ui/login?next=%2Fui"), path
            assert "still waiting" not in answer.text and "kaput" not in answer.text
        else:
            # a valid CSRF token: the refusal is the login's, not the form's
            answer = client.http.post(path, data={"csrf_token": client.csrf(), "input": "{}"})
            assert answer.status_code == 403, (path, answer.status_code)
            assert "Log in first" in answer.text, path
        checked += 1
    assert checked == len([r for r in routes if r[1] not in PUBLIC_PATHS])
    # nothing happened: the pending task still waits, the dead letter is still dead, and
    # no call from the try-it form was queued
    broker = client.services.broker
    assert broker.get(pending).status == "pending"
    assert broker.get(dead).status == "dead"
    assert broker.stats().pending == {"demo.echo": 1}


def test_the_public_paths_are_the_login_form_and_its_stylesheet(
    console: Callable[..., ConsoleClient],
) -> None:
    client = console(token=TOKEN)
    assert {"/ui/login", "/ui/static/console.css"} == set(PUBLIC_PATHS)
    form = client.http.get("/ui/login")
    assert form.status_code == 200
    assert [f["action"] for f in forms_of(form.text)] == ["/ui/login"]
    css = client.http.get("/ui/static/console.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")


def test_logging_in_sets_a_strict_http_only_session_cookie(
    console: Callable[..., ConsoleClient],
) -> None:
    client = console(token=TOKEN)
    answer = client.log_in()
    assert answer.status_code == 303 and answer.headers["location"] == "/ui"
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith("crank_console=")
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "samesite", "path", "max-age"} <= attributes
    assert "samesite=strict" in cookie.lower() and "path=/ui" in cookie.lower()
    assert TOKEN not in cookie
    overview = client.http.get("/ui")
    assert overview.status_code == 200 and "<h1>Overview</h1>" in overview.text
    assert "Logged in." in overview.text  # the flash message, shown once
    assert "Logged in." not in client.http.get("/ui").text


def test_a_wrong_token_is_refused_and_logged_without_the_token(
    console: Callable[..., ConsoleClient], capsys: pytest.CaptureFixture[str]
) -> None:
    client = console(token=TOKEN)
    guess = "not-the-token-" + "x" * 12
    answer = client.log_in(guess)
    assert answer.status_code == 401
    assert "not the server" in answer.text
    assert client.http.get("/ui").status_code == 303
    logged = capsys.readouterr()
    assert "console_login_failed" in logged.out + logged.err
    assert guess not in logged.out + logged.err and TOKEN not in logged.out + logged.err


def test_after_login_the_next_page_is_the_one_asked_for_never_another_site(
    console: Callable[..., ConsoleClient],
) -> None:
    client = console(token=TOKEN)
    first = client.http.get("/ui/deprecated")
    assert first.headers["location"] == "/ui/login?next=%2Fui%2Fdeprecated"
    csrf = client.csrf("/ui/login")
    answer = client.http.post(
        "/ui/login", data={"csrf_token": csrf, "token": TOKEN, "next": "/ui/deprecated"}
    )
    assert answer.headers["location"] == "/ui/deprecated"
    for evil in ("https://evil.example/ui", "//evil.example/ui", "/uix", "/v1/status", "/ui\\x"):
        client.http.cookies.clear()
        csrf = client.csrf("/ui/login")
        answer = client.http.post(
            "/ui/login", data={"csrf_token": csrf, "token": TOKEN, "next": evil}
        )
        assert answer.headers["location"] == "/ui", evil


def test_logging_out_ends_the_session(console: Callable[..., ConsoleClient]) -> None:
    client = console(token=TOKEN)
    client.log_in()
    assert "Log out" in client.http.get("/ui").text
    answer = client.post_form("/ui/logout", {})
    assert (answer.status_code, answer.headers["location"]) == (303, "/ui/login")
    assert client.http.get("/ui").status_code == 303


def test_a_forged_or_tampered_cookie_is_no_session(console: Callable[..., ConsoleClient]) -> None:
    client = console(token=TOKEN)
    client.log_in()
    value = client.http.cookies["crank_console"]
    body, mac = value.split(".")
    other = SessionSigner(b"another key")
    forged = other.dumps(other.new(authenticated=True))
    for bad in (forged, f"{body}x.{mac}", f"{body}.{mac[:-2]}", "garbage", ""):
        client.http.cookies.clear()
        client.http.cookies.set("crank_console", bad, path="/ui")
        assert client.http.get("/ui").status_code == 303, bad


def test_actions_need_this_sessions_csrf_token(console: Callable[..., ConsoleClient]) -> None:
    client = console()  # no token: the CSRF check holds all the same
    path = "/ui/capabilities/demo.echo/call"
    data = {"input": '{"text": "hi"}', "run": "queue"}
    assert client.http.post(path, data=data).status_code == 403  # no token at all
    other = console()
    foreign = other.csrf()
    refused = client.http.post(path, data={**data, "csrf_token": foreign})
    assert refused.status_code == 403 and "Form expired" in refused.text
    cross = client.http.post(
        path, data={**data, "csrf_token": client.csrf()}, headers={"Sec-Fetch-Site": "cross-site"}
    )
    assert cross.status_code == 403 and "another site" in cross.text
    not_a_form = client.http.post(path, json={**data, "csrf_token": client.csrf()})
    assert not_a_form.status_code == 415
    assert client.services.broker.stats().pending == {}
    accepted = client.post_form(path, data)
    assert accepted.status_code == 303, accepted.text
    assert client.services.broker.stats().pending == {"demo.echo": 1}


def test_every_answer_keeps_the_console_out_of_frames_caches_and_scripts(
    console: Callable[..., ConsoleClient],
) -> None:
    client = console()
    for path in ("/ui", "/ui/capabilities", "/ui/tasks/none", "/ui/login"):
        headers = client.http.get(path).headers
        assert headers["x-frame-options"] == "DENY", path
        assert "frame-ancestors 'none'" in headers["content-security-policy"], path
        assert "script-src" not in headers["content-security-policy"]  # default-src 'none'
        assert headers["cache-control"] == "no-store" or path == "/ui/login"


def test_readonly_shows_pages_without_actions_and_refuses_every_action(
    console: Callable[..., ConsoleClient],
) -> None:
    client = console(token=TOKEN, ui="readonly")
    pending, dead = _pending_and_dead(client)
    assert client.log_in().status_code == 303  # logging in is no task action
    for method, template in _routes(client):
        path = _fill(template, dead if "dead-letters" in template else pending)
        if method == "GET":
            page = client.http.get(path)
            assert page.status_code in (200, 303), path
            if page.status_code == 200 and path.startswith("/ui") and "css" not in path:
                actions = [f["action"] for f in forms_of(page.text) if f["method"] == "post"]
                assert actions in ([], ["/ui/logout"]), (path, actions)
        elif template not in ("/ui/login", "/ui/logout"):
            refused = client.post_form(path, {"input": "{}"})
            assert refused.status_code == 403 and "Read-only console" in refused.text, path
    assert client.services.broker.get(pending).status == "pending"
    assert client.services.broker.stats().pending == {"demo.echo": 1}


def test_off_serves_no_console_at_all(console: Callable[..., ConsoleClient]) -> None:
    client = console(ui="off")
    for path in ("/ui", "/ui/login", "/ui/static/console.css", "/ui/capabilities"):
        answer = client.http.get(path)
        assert answer.status_code == 404, path
        assert answer.json()["error"]["code"] == "NOT_FOUND"
    assert console_routes(client.services) == []
    with_token = console(token=TOKEN, ui="off")
    # the bearer token still guards the rest: /ui is just another unknown path
    assert with_token.http.get("/ui").status_code == 401
    assert (
        with_token.http.get("/ui", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 404
    )


def test_the_bearer_token_alone_does_not_open_the_console(
    console: Callable[..., ConsoleClient],
) -> None:
    client = console(token=TOKEN)
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    assert client.http.get("/v1/status", headers=bearer).status_code == 200
    assert client.http.get("/v1/status").status_code == 401
    assert client.http.get("/ui", headers=bearer).status_code == 303


def test_session_signer_refuses_old_and_future_sessions() -> None:
    now = [1_000_000.0]
    signer = SessionSigner(b"k" * 32, max_age_s=3600, clock=lambda: now[0])
    value = signer.dumps(signer.new(authenticated=True))
    assert signer.loads(value) is not None
    now[0] += 3601
    assert signer.loads(value) is None
    now[0] -= 3601 + 3600
    assert signer.loads(value) is None  # issued an hour in the future: a forged clock
    assert re.fullmatch(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+", value)
