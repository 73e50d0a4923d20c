"""``crank tasks`` and ``crank status`` against servers that answer badly: a bad --url,
an empty task id, a refused token, a server that is not crank, tasks that cannot be
redriven. The real entry point runs against a small HTTP server in this process,
which answers each path as the test says and records what it was asked."""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

import pytest

from ..ports import free_port
from .entry import crank

if TYPE_CHECKING:
    from collections.abc import Iterator

#: path (without query) -> (status, content type, body)
Answers = dict[str, tuple[int, str, str]]

HTML_404 = (404, "text/html", "<!DOCTYPE HTML>\n<html><body><h1>Error response</h1></body></html>")


class FakeServer:
    """Answers ``answers[path]`` (else an HTML 404, as ``python -m http.server`` does)."""

    def __init__(self) -> None:
        self.answers: Answers = {}
        self.asked: list[tuple[str, str]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def answer(self) -> None:
                path = self.path.split("?", 1)[0]
                server.asked.append((self.command, path))
                status, content_type, body = server.answers.get(path, HTML_404)
                data = body.encode()
                self.send_response(status)
                self.send_header("content-type", content_type)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = answer

            def log_message(self, *args: object) -> None:
                return None

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._http.server_port}"
        self._thread = threading.Thread(target=self._http.serve_forever, args=(0.01,), daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._http.shutdown()
        self._http.server_close()


@pytest.fixture
def server(caplog: pytest.LogCaptureFixture) -> Iterator[FakeServer]:
    # httpx logs each request at INFO: where an earlier test left logging configured
    # to print that on stderr, it would land between the lines asserted here
    caplog.set_level(logging.WARNING, logger="httpx")
    fake = FakeServer()
    yield fake
    fake.close()


def crank_error(status: int, code: str, message: str) -> tuple[int, str, str]:
    return status, "application/json", json.dumps({"error": {"code": code, "message": message}})


def task_document(task_id: str, status: str) -> tuple[int, str, str]:
    return 200, "application/json", json.dumps({"id": task_id, "status": status})


# -- --url ------------------------------------------------------------------------


@pytest.mark.parametrize("command", [["status"], ["tasks", "list"]])
@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://127.0.0.1:badport", "is not a valid URL: Port could not be cast"),
        ("http://[::1", "is not a valid URL: Invalid IPv6 URL"),
        ("http://127.0.0.1:99999", "is not a valid URL: Port out of range 0-65535"),
        ("http://127.0.0.1:0", "has port 0, which no server listens on"),
    ],
)
def test_a_url_with_a_bad_host_or_port_is_a_bad_argument(
    command: list[str], url: str, why: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = crank([*command, "--url", url], capsys)
    assert (code, out) == (2, "")
    assert f"error: Invalid value for '--url': {url!r} {why}" in err
    assert "(e.g. http://127.0.0.1:8080)\n" in err
    assert err.endswith(f"  hint: see `crank {' '.join(command)} --help`\n")


@pytest.mark.parametrize("command", [["status"], ["tasks", "list"]])
@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://alice:s3cret@127.0.0.1:0", "'http://alice:***@127.0.0.1:0' has port 0"),
        ("http://alice:s3cret@[::1", "'http://alice:***@[::1' is not a valid URL: Invalid IPv6"),
        # an unescaped "/" ends the host there: urlsplit quotes "s3" as the port
        ("http://alice:s3/cret@127.0.0.1", "'http://alice:***@127.0.0.1' is not a valid URL ("),
        ("alice:s3cret@127.0.0.1", "'alice:***@127.0.0.1' is not an http:// or https:// URL"),
    ],
)
def test_a_bad_url_is_named_without_its_password(
    command: list[str], url: str, why: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = crank([*command, "--url", url], capsys)
    assert (code, out) == (2, "")
    assert f"error: Invalid value for '--url': {why}" in err
    assert "s3" not in err


@pytest.mark.parametrize("command", [["status"], ["tasks", "list"], ["tasks", "show", "9f0c"]])
@pytest.mark.parametrize("answering", [False, True], ids=["nothing-listens", "not-crank"])
def test_a_url_with_a_password_is_named_without_it(
    command: list[str],
    answering: bool,
    server: FakeServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # the whole URL, password included, was echoed on stderr (and into CI logs)
    base = server.url if answering else f"http://127.0.0.1:{free_port()}"
    url = base.replace("http://", "http://alice:s3cret@") + "/crank"
    code, out, err = crank([*command, "--url", url], capsys)
    assert (code, out) == (3, "")
    shown = base.replace("http://", "http://alice:***@") + "/crank"
    assert shown in err
    assert "s3cret" not in err


# -- TASK_ID ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "args", [["show", ""], ["cancel", ""], ["redrive", ""], ["redrive", "9f0c", " "]]
)
def test_an_empty_task_id_is_refused_before_asking_the_server(
    args: list[str], server: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = crank(["tasks", *args, "--url", server.url], capsys)
    assert (code, out) == (2, "")
    assert "a task id cannot be empty (`crank tasks list` shows the ids)" in err
    assert server.asked == []


@pytest.mark.parametrize(
    "args",
    [["show", "a/b"], ["show", "."], ["show", ".."], ["cancel", "a/b"], ["redrive", "9f0c", ".."]],
)
def test_a_task_id_that_would_be_a_path_is_refused_before_asking_the_server(
    args: list[str], server: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    # the client refused it with an error the CLI did not expect: exit 4, not 2
    code, out, err = crank(["tasks", *args, "--url", server.url], capsys)
    assert (code, out) == (2, "")
    assert f"{args[-1]!r} is no task id: a task id is not '.' or '..' and holds no '/'" in err
    assert server.asked == []


def test_a_capability_that_would_be_a_path_is_a_bad_argument(
    server: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = crank(["tasks", "redrive", "--capability", "a/b", "--url", server.url], capsys)
    assert (code, out) == (2, "")
    assert err.startswith("error: capability id 'a/b' cannot be one")
    assert server.asked == []


# -- a token an HTTP header cannot carry ----------------------------------------------


@pytest.mark.parametrize("command", [["status"], ["tasks", "list"]])
@pytest.mark.parametrize(
    ("token", "problem"),
    [
        ("secret ", "starts or ends with a space"),
        (" secret", "starts or ends with a space"),
        ("ünï", "holds 'ü', which is not printable ASCII"),
        ("sec\nret", "holds '\\n', which is not printable ASCII"),
    ],
)
def test_a_token_a_header_cannot_carry_is_a_bad_argument(
    command: list[str],
    token: str,
    problem: str,
    server: FakeServer,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # status crashed (UnicodeEncodeError) or said no server answers; tasks exited 4
    monkeypatch.setenv("CRANK_API_TOKEN", token)
    code, out, err = crank([*command, "--url", server.url], capsys)
    assert (code, out) == (2, "")
    assert err == (
        f"error: CRANK_API_TOKEN {problem}: an HTTP header cannot carry it as the server's "
        "token\n  hint: set CRANK_API_TOKEN to the exact token the server was started with\n"
    )
    assert server.asked == []


# -- a refused token ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "path", "message"),
    [
        (["tasks", "list"], "/v1/tasks", "error: {url} refused the bearer token"),
        (["status"], "/v1/status", "error: {url}/v1/status refused the bearer token"),
    ],
)
def test_a_wrong_token_is_said_to_be_refused(
    command: list[str],
    path: str,
    message: str,
    server: FakeServer,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server.answers[path] = crank_error(401, "UNAUTHORIZED", "a valid bearer token is required")
    monkeypatch.setenv("CRANK_API_TOKEN", "wrong")
    code, out, err = crank([*command, "--url", server.url], capsys)
    assert (code, out) == (2, "")
    assert err == (
        f"{message.format(url=server.url)} in CRANK_API_TOKEN\n"
        "  hint: check CRANK_API_TOKEN: it must be the token the server was started with "
        "(its CRANK_API_TOKEN)\n"
    )
    monkeypatch.delenv("CRANK_API_TOKEN")
    code, _, err = crank([*command, "--url", server.url], capsys)
    assert code == 2
    assert "wants a bearer token\n  hint: set CRANK_API_TOKEN to the server's token\n" in err


# -- a server that is not crank -------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (HTML_404, "error: {url} answered HTTP 404 without a crank error\n"),
        (
            (200, "text/html", "<html>hello</html>"),
            "error: {url} answered, but not with what a crank server sends\n",
        ),
        ((200, "application/json", "[1, 2]"), "not with what a crank server sends"),
    ],
)
@pytest.mark.parametrize("args", [["list"], ["show", "9f0c"]])
def test_a_server_that_is_not_crank_is_unavailable(
    args: list[str],
    answer: tuple[int, str, str],
    message: str,
    server: FakeServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server.answers = {"/v1/tasks": answer, "/v1/tasks/9f0c": answer}
    code, out, err = crank(["tasks", *args, "--url", server.url], capsys)
    assert (code, out) == (3, "")
    assert message.format(url=server.url) in err
    assert err.endswith("  hint: is this a crank server? check --url\n")
    assert "<html" not in err


#: the fields of a crank health report, as `crank run` sends them
REPORT = {
    "timestamp": "2026-11-22T00:00:00+00:00",
    "overall_health": "healthy",
    "problems": [],
    "worker_pool_health": {"total_workers": 1, "healthy_workers": 1},
    "queue_health": {"total_pending_tasks": 0},
}


def test_status_prints_a_health_report(
    server: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    server.answers["/v1/status"] = (200, "application/json", json.dumps(REPORT))
    code, out, err = crank(["status", "--url", server.url], capsys)
    assert (code, err) == (0, "")
    assert json.loads(out) == REPORT


@pytest.mark.parametrize(
    ("answer", "wrong"),
    [
        ({"tasks": "x"}, "overall_health, problems, worker_pool_health, queue_health"),
        ({**REPORT, "problems": "none"}, "problems"),
        ({**REPORT, "overall_health": None}, "overall_health"),
    ],
    ids=["any-object", "problems-not-a-list", "no-overall-health"],
)
def test_status_of_json_that_is_no_health_report_is_unavailable(
    answer: dict[str, object],
    wrong: str,
    server: FakeServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # any JSON object was printed as the report, with exit status 0 as if all were well
    server.answers["/v1/status"] = (200, "application/json", json.dumps(answer))
    code, out, err = crank(["status", "--url", server.url], capsys)
    assert (code, out) == (3, "")
    assert err == (
        f"error: {server.url}/v1/status answered a JSON object that is not a crank health "
        f"report: {wrong} missing or not of the right type\n"
        "  hint: is this a crank server? check --url\n"
    )


def test_status_of_a_health_this_crank_does_not_know_is_unavailable(
    server: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    answer = {**REPORT, "overall_health": "wobbly"}
    server.answers["/v1/status"] = (200, "application/json", json.dumps(answer))
    code, out, err = crank(["status", "--url", server.url], capsys)
    assert (code, out) == (3, "")
    assert err == (
        f"error: {server.url}/v1/status reports overall_health 'wobbly', which this crank "
        "does not know (healthy, degraded, critical)\n"
        "  hint: the server runs another version of crank: use the crank command of that "
        "version, or read the report with `curl`\n"
    )


# -- redrive --------------------------------------------------------------------------


def test_redrive_goes_on_after_a_task_it_cannot_redrive(
    server: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    server.answers = {
        "/v1/dead-letters/gone/redrive": crank_error(404, "TASK_NOT_FOUND", "no task 'gone'"),
        "/v1/dead-letters/done/redrive": crank_error(
            409, "NOT_A_DEAD_LETTER", "task done is not a dead letter: it is succeeded"
        ),
        "/v1/dead-letters/dead/redrive": task_document("dead", "pending"),
    }
    code, out, err = crank(
        ["tasks", "redrive", "gone", "done", "dead", "--url", server.url], capsys
    )
    assert [path for _, path in server.asked] == [
        "/v1/dead-letters/gone/redrive",
        "/v1/dead-letters/done/redrive",
        "/v1/dead-letters/dead/redrive",
    ]
    assert out == "dead: back on the queue (pending)\n"
    assert err == (
        "error: no task 'gone'\n"
        "  hint: tasks expire after their result TTL; `crank tasks list` shows them\n"
        "error: HTTP 409 NOT_A_DEAD_LETTER: task done is not a dead letter: it is succeeded\n"
    )
    assert code == 2  # an unknown task outweighs one that is no dead letter


def test_redrive_of_tasks_that_are_no_dead_letters_exits_1_with_their_hints(
    server: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    refusal = {
        "error": {
            "code": "NOT_A_DEAD_LETTER",
            "message": "task done is not a dead letter: it is succeeded",
            "hint": "only dead tasks are redriven",
        }
    }
    server.answers = {
        "/v1/dead-letters/done/redrive": (409, "application/json", json.dumps(refusal)),
        "/v1/dead-letters/dead/redrive": task_document("dead", "pending"),
    }
    code, out, err = crank(["tasks", "redrive", "done", "dead", "--url", server.url], capsys)
    assert (code, out) == (1, "dead: back on the queue (pending)\n")
    assert err == (
        "error: HTTP 409 NOT_A_DEAD_LETTER: task done is not a dead letter: it is succeeded\n"
        "  hint: only dead tasks are redriven\n"
    )


def test_redrive_stops_at_an_error_that_is_not_about_the_task(
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    code, out, err = crank(["tasks", "redrive", "a", "b", "--url", url], capsys)
    assert (code, out) == (3, "")
    assert err.count("error: no crank server answers") == 1
