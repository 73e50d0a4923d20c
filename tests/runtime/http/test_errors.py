"""The error contract of docs/runtime.md: every error answer is ``{"error": {code, message,
hint?}}`` with its documented status, Starlette's own 404/405 included; bodies must be
strict JSON declared as JSON; a long offending value is quoted short."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from pathlib import Path

    from httpx import Client

    from crank.runtime.http.services import RuntimeServices


def _error(r: Any, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert set(body) == {"error"}
    error: dict[str, Any] = body["error"]
    assert error["code"] == code
    assert error["message"]
    return error


def test_an_unknown_path_is_a_json_404(client: Client) -> None:
    error = _error(client.get("/v2/nothing"), 404, "NOT_FOUND")
    assert "/v2/nothing" in error["message"]
    assert "openapi.json" in error["hint"]


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /v1/tasks HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
        b"NOT HTTP AT ALL\r\n\r\n",
        b"GET /v1/tasks HTTP/1.1\r\nHost: x\r\nX-Bad: a\x01b\r\n\r\n",
    ],
)
def test_bytes_that_are_not_http_get_the_json_error_too(
    client: Client, request_bytes: bytes
) -> None:
    """The server's own 400 for a malformed request was plain text, unlike every other
    error."""
    import socket

    with socket.create_connection((client.base_url.host, client.base_url.port), 30) as raw:
        raw.sendall(request_bytes)
        answer = b""
        while chunk := raw.recv(65536):  # the server closes the connection after it
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0] == "HTTP/1.1 400 Bad Request"
    assert "content-type: application/json" in lines
    assert "connection: close" in lines
    assert f"content-length: {len(body)}" in lines
    error = json.loads(body)["error"]
    assert error["code"] == "MALFORMED_REQUEST"
    assert error["message"].startswith("the request is not valid HTTP/1.1")


def test_a_trailing_slash_is_redirected_to_the_path_alone_never_to_the_host_header(
    client: Client,
) -> None:
    # Starlette's redirect wrote the request's Host header into Location: a request
    # that named another host was sent to it
    r = client.get("/v1/tasks/?limit=2", headers={"Host": "evil.example"})
    assert (r.status_code, r.headers["location"]) == (307, "/v1/tasks?limit=2")
    r = client.post("/v1/capabilities/demo.echo/", json={"text": "x"})
    assert (r.status_code, r.headers["location"]) == (307, "/v1/capabilities/demo.echo")
    followed = client.get("/v1/tasks/", follow_redirects=True)
    assert followed.status_code == 200 and "tasks" in followed.json(), followed.text
    # no redirect to a route that would refuse the method, nor to another site
    _error(client.post("/ready/"), 404, "NOT_FOUND")
    _error(client.get("//evil.example/"), 404, "NOT_FOUND")


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PUT", "/v1/tasks", "GET, HEAD, POST"),
        ("DELETE", "/health", "GET, HEAD"),
        ("PUT", "/v1/capabilities/demo.echo", "POST"),
        ("GET", "/echo", "POST"),
    ],
)
def test_a_wrong_method_is_a_json_405_with_allow(
    client: Client, method: str, path: str, allowed: str
) -> None:
    answer = client.request(method, path)
    error = _error(answer, 405, "METHOD_NOT_ALLOWED")
    assert error["message"] == f"{method} is not allowed on {path}"
    # every method of the path, although several routes answer it
    assert answer.headers["allow"] == allowed


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"],
)
@pytest.mark.parametrize("path", ["/v1/tasks", "/v1/capabilities/demo.echo", "/echo"])
def test_a_body_that_is_not_json_by_its_content_type_is_415(
    client: Client, services: RuntimeServices, path: str, content_type: str
) -> None:
    body = json.dumps({"capability": "demo.echo", "input": {"text": "x"}, "text": "x"})
    r = client.post(path, content=body, headers={"Content-Type": content_type})
    error = _error(r, 415, "UNSUPPORTED_MEDIA_TYPE")
    assert content_type.split(";")[0] in error["message"]
    assert "application/json" in error["hint"]
    assert sum(services.broker.stats().pending.values()) == 0


@pytest.mark.parametrize("path", ["/v1/tasks", "/v1/capabilities/demo.echo", "/echo"])
def test_a_compressed_body_is_415_naming_its_encoding(
    client: Client, services: RuntimeServices, path: str
) -> None:
    import gzip

    body = gzip.compress(json.dumps({"capability": "demo.echo", "input": {"text": "x"}}).encode())
    headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    error = _error(client.post(path, content=body, headers=headers), 415, "UNSUPPORTED_MEDIA_TYPE")
    assert "Content-Encoding: gzip" in error["message"]
    assert "uncompressed" in error["hint"]
    assert sum(services.broker.stats().pending.values()) == 0
    identity = {"Content-Type": "application/json", "Content-Encoding": "identity"}
    body = json.dumps({"capability": "demo.echo", "input": {"text": "x"}}).encode()
    assert client.post("/v1/tasks", content=body, headers=identity).status_code == 202


@pytest.mark.parametrize(
    "content_type", ["application/json", "application/json; charset=utf-8", "application/x+json"]
)
def test_json_media_types_are_accepted(client: Client, content_type: str) -> None:
    body = json.dumps({"capability": "demo.echo", "input": {"text": "x"}})
    r = client.post("/v1/tasks", content=body, headers={"Content-Type": content_type})
    assert r.status_code == 202, r.text


@pytest.mark.parametrize("number", ["1e309", "-2.5E+400", "1" + "0" * 400 + ".5"])
def test_a_number_beyond_a_floats_range_is_not_read_as_infinity(
    client: Client, services: RuntimeServices, number: str
) -> None:
    """Python reads 1e309 as inf: through a number without a maximum, a task was queued
    with an input no JSON can write back (its GET answered 500)."""
    for path, body in (
        ("/v1/tasks", '{"capability": "demo.summarize", "input": {"text": "a", "cost_usd": %s}}'),
        ("/v1/capabilities/demo.summarize", '{"text": "a", "cost_usd": %s}'),
    ):
        r = client.post(path, content=body % number, headers={"Content-Type": "application/json"})
        error = _error(r, 400, "INVALID_INPUT")
        assert "beyond the range of a 64-bit float" in error["message"]
        assert error["errors"] == [{"path": "$", "message": "not valid JSON"}]
        assert len(error["message"]) < 250
    assert sum(services.broker.stats().pending.values()) == 0


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_not_json(client: Client, constant: str) -> None:
    body = '{"capability": "demo.slow", "input": {"seconds": ' + constant + "}}"
    r = client.post("/v1/tasks", content=body, headers={"Content-Type": "application/json"})
    error = _error(r, 400, "INVALID_INPUT")
    assert constant.lstrip("-") in error["message"]
    assert error["errors"] == [{"path": "$", "message": "not valid JSON"}]
    r = client.post(
        "/v1/capabilities/demo.slow",
        content='{"seconds": ' + constant + "}",
        headers={"Content-Type": "application/json"},
    )
    _error(r, 400, "INVALID_INPUT")


def test_a_key_given_twice_is_not_json(client: Client) -> None:
    body = '{"capability": "demo.echo", "input": {"text": "a", "text": "b"}}'
    r = client.post("/v1/tasks", content=body, headers={"Content-Type": "application/json"})
    error = _error(r, 400, "INVALID_INPUT")
    assert 'duplicate key "text" (first at line 1 column 39)' in error["message"]
    assert error["errors"] == [{"path": "$", "message": "not valid JSON"}]


def test_a_long_value_is_quoted_by_a_short_prefix_with_its_length(client: Client) -> None:
    text = "x" * 450_000
    r = client.post("/v1/capabilities/demo.echo", json={"text": text})
    error = _error(r, 400, "INVALID_INPUT")
    assert len(r.content) < 2_000
    assert "(450000 characters)" in error["message"]
    assert error["errors"] == [
        {"path": "$.text", "message": f'"{"x" * 40}"... (450000 characters) is too long'}
    ]


@pytest.mark.parametrize(
    ("body", "kind"),
    [("[]", "an array"), ("null", "null"), ('"hi"', "a string"), ("7", "a number")],
)
def test_a_body_that_is_not_an_object_is_named_in_jsons_words(
    client: Client, body: str, kind: str
) -> None:
    # it was "list is not an object", "NoneType is not an object": Python's names
    headers = {"Content-Type": "application/json"}
    error = _error(client.post("/v1/tasks", content=body, headers=headers), 400, "INVALID_INPUT")
    assert error["errors"] == [{"path": "$", "message": f"{kind}, not an object"}]
    r = client.post("/v1/capabilities/demo.echo", content=body, headers=headers)
    error = _error(r, 400, "INVALID_INPUT")
    assert error["errors"] == [{"path": "$", "message": f"{kind}, not an object"}]


def test_a_number_too_long_to_read_is_refused_without_pythons_advice(client: Client) -> None:
    body = '{"capability": "demo.echo", "input": {"text": ' + "9" * 5000 + "}}"
    r = client.post("/v1/tasks", content=body, headers={"Content-Type": "application/json"})
    error = _error(r, 400, "INVALID_INPUT")
    assert "a number has more than 4300 digits" in error["message"]
    assert "sys." not in error["message"]


def test_an_unknown_task_id_is_quoted_short(client: Client) -> None:
    error = _error(client.get(f"/v1/tasks/{'a' * 5000}"), 404, "TASK_NOT_FOUND")
    assert len(error["message"]) < 120
    assert "(5000 characters)" in error["message"]


def test_an_unknown_capability_is_quoted_short(client: Client) -> None:
    for r in (
        client.post(f"/v1/capabilities/{'a' * 5000}", json={}),
        client.post("/v1/tasks", json={"capability": "b" * 5000, "input": {}}),
        client.post(f"/v1/capabilities/demo.echo@{'1' * 5000}", json={}),
    ):
        error = _error(r, 404, "CAPABILITY_NOT_FOUND")
        assert " characters)" in error["message"]
        assert len(error["message"]) < 200


def test_a_major_version_of_other_digits_is_a_404_not_a_broker_failure(client: Client) -> None:
    # "2" written as a superscript: str.isdigit says yes, int() raised, the answer blamed
    # the broker (503, Retry-After: a client retried it forever)
    for r in (
        client.post("/v1/capabilities/demo.echo@\u00b2", json={"text": "a"}),
        client.post("/v1/tasks", json={"capability": "demo.echo@\u00b2", "input": {"text": "a"}}),
    ):
        error = _error(r, 404, "CAPABILITY_NOT_FOUND")
        assert error["message"] == "'demo.echo@\u00b2' is not a capability reference"


def test_a_bad_status_filter_lists_the_statuses(client: Client) -> None:
    error = _error(client.get("/v1/tasks?status=bogus"), 400, "INVALID_INPUT")
    assert error["hint"].startswith("use one of pending, ")
    assert "(" not in error["hint"]


def test_many_problems_are_listed_up_to_a_bound(client: Client) -> None:
    # demo.echo allows no other property: each of these is a problem of its own
    data = {"text": "x", **{f"extra{i}": i for i in range(500)}}
    r = client.post("/v1/capabilities/demo.echo", json=data)
    error = _error(r, 400, "INVALID_INPUT")
    assert len(r.content) < 10_000
    assert len(error["errors"]) <= 20


def test_a_task_without_input_names_the_envelope(client: Client) -> None:
    error = _error(client.post("/v1/tasks", json={"capability": "demo.echo"}), 400, "INVALID_INPUT")
    assert error["message"] == "invalid task envelope: $.input: the capability's input is required"
    assert error["errors"] == [{"path": "$.input", "message": "the capability's input is required"}]
    error = _error(
        client.post("/v1/tasks", json={"capability": "demo.echo", "input": "hi"}),
        400,
        "INVALID_INPUT",
    )
    assert error["errors"] == [
        {"path": "$.input", "message": "the capability's input must be a JSON object"}
    ]


def test_an_unknown_envelope_field_is_refused(client: Client) -> None:
    body = {"capability": "demo.echo", "input": {"text": "x"}, "priorty": 5}
    error = _error(client.post("/v1/tasks", json=body), 400, "INVALID_INPUT")
    assert error["errors"] == [{"path": "$.priorty", "message": "not a field of the task envelope"}]


def test_input_problems_point_into_the_envelope(client: Client) -> None:
    body = {"capability": "demo.echo", "input": {"text": 3}}
    error = _error(client.post("/v1/tasks", json=body), 400, "INVALID_INPUT")
    assert error["message"].startswith("input for demo.echo is invalid: $.input.text: 3 is not")


def test_a_bad_after_is_refused_even_with_last_event_id(client: Client) -> None:
    submitted = client.post("/v1/tasks", json={"capability": "demo.count", "input": {"n": 1}})
    task_id = submitted.json()["id"]
    for query in ("after=9223372036854775808", "after=-1", "after=1&after=2"):
        r = client.get(f"/v1/tasks/{task_id}/events?{query}", headers={"Last-Event-ID": "0"})
        error = _error(r, 400, "INVALID_INPUT")
        assert error["errors"][0]["path"] == "query:after"


def test_a_parameter_a_task_route_does_not_take_is_refused(client: Client) -> None:
    # ?wiat=5 answered at once, as if no wait was asked; the list already refused typos
    submitted = client.post("/v1/tasks", json={"capability": "demo.count", "input": {"n": 1}})
    task_id = submitted.json()["id"]
    error = _error(client.get(f"/v1/tasks/{task_id}?wiat=5"), 400, "INVALID_INPUT")
    assert error["errors"] == [{"path": "query:wiat", "message": "not a parameter of this route"}]
    assert error["hint"] == "use ?wait="
    error = _error(client.get(f"/v1/tasks/{task_id}/events?from=2"), 400, "INVALID_INPUT")
    assert error["errors"][0]["path"] == "query:from"
    # a header given twice: which one is meant is a guess
    r = client.get(
        f"/v1/tasks/{task_id}/events",
        headers=[("Last-Event-ID", "1"), ("Last-Event-ID", "2")],
    )
    assert _error(r, 400, "INVALID_INPUT")["errors"][0]["path"] == "header:Last-Event-ID"


def test_a_query_parameter_a_submit_or_call_does_not_take_is_refused(client: Client) -> None:
    """``?priority=10`` queued the task at priority 0 as if it were not there; a call's
    typo was as silent. Nothing is queued."""
    body = {"capability": "demo.echo", "input": {"text": "a"}}
    error = _error(client.post("/v1/tasks?priority=10", json=body), 400, "INVALID_INPUT")
    assert error["errors"] == [
        {"path": "query:priority", "message": "not a parameter of this route"}
    ]
    assert error["hint"].startswith("this route takes no query parameter")
    r = client.post("/v1/capabilities/demo.echo?timeout=5", json={"text": "a"})
    assert _error(r, 400, "INVALID_INPUT")["errors"][0]["path"] == "query:timeout"
    for path in ("/v1/status?verbose=1", "/v1/capabilities?id=demo.echo"):
        assert _error(client.get(path), 400, "INVALID_INPUT")["errors"][0]["path"].startswith(
            "query:"
        )
    r = client.delete("/v1/tasks/nothing?force=1")
    assert _error(r, 400, "INVALID_INPUT")["errors"][0]["path"] == "query:force"
    assert client.get("/v1/tasks").json()["tasks"] == []
    # a legacy route's old clients may send what the service it replaces ignored
    assert client.post("/retired?v=1", json={"text": "a"}).status_code == 410


@pytest.mark.parametrize("header", ["Idempotency-Key", "X-Crank-Caller"])
def test_an_idempotency_key_or_caller_sent_twice_is_refused(client: Client, header: str) -> None:
    # the first one was used: a retry whose proxy added a second key could be filed
    # under either
    body = {"capability": "demo.echo", "input": {"text": "x"}}
    r = client.post("/v1/tasks", json=body, headers=[(header, "first"), (header, "second")])
    error = _error(r, 400, "INVALID_INPUT")
    assert error["errors"] == [{"path": f"header:{header}", "message": "given more than once"}]
    assert client.get("/v1/tasks").json()["tasks"] == []


@pytest.mark.parametrize(
    "query", ["wait=abc", "wait=-1", "wait=55.5", "wait=nan", "wait=inf", "wait=1_0", "wait= 1",
              "wait=", "wait=1&wait=2", "wait=1e400"],
)  # fmt: skip
def test_a_bad_wait_is_refused_naming_it(client: Client, query: str) -> None:
    submitted = client.post("/v1/tasks", json={"capability": "demo.echo", "input": {"text": "a"}})
    task_id = submitted.json()["id"]
    for path in (f"/v1/tasks/{task_id}", "/v1/tasks/no-such-task"):
        error = _error(client.get(f"{path}?{query}"), 400, "INVALID_INPUT")
        assert error["errors"][0]["path"] == "query:wait"
        assert "?wait=" in error["message"]
        assert "0 to 55" in error["hint"]


def test_a_wait_for_an_unknown_task_is_a_404(client: Client) -> None:
    _error(client.get("/v1/tasks/no-such-task?wait=55"), 404, "TASK_NOT_FOUND")


def test_an_unexpected_failure_is_a_json_500(
    client: Client, services: RuntimeServices, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken() -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(services.status, "report", broken)
    r = client.get("/v1/status")
    error = _error(r, 500, "INTERNAL")
    assert "RuntimeError" in error["message"]
    assert "a bug" not in error["message"]
    # the server closes the connection after it: the client is told, and does not send
    # its next request on it (which was reset)
    assert r.headers["connection"] == "close"
    for _ in range(3):
        assert _error(client.get("/v1/status"), 500, "INTERNAL")
        assert client.get("/health").status_code == 200


def test_an_input_schema_python_cannot_check_is_a_500_naming_it_not_a_broker_failure(
    make_services: Any, serve: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``\\p{L}`` is a JSON Schema (ECMA-262) pattern Python's ``re`` refuses: every call
    answered 503 BROKER_UNAVAILABLE with Retry-After, so clients retried for ever and
    operators looked at the broker."""
    from . import conftest

    manifest = tmp_path / "crank.yaml"
    declared = "text: {type: string, maxLength: 200}"
    source = conftest.HTTP_MANIFEST.read_text()
    assert declared in source
    manifest.write_text(source.replace(declared, declared[:-1] + ', pattern: "^\\\\p{L}+$"}', 1))
    monkeypatch.setattr(conftest, "HTTP_MANIFEST", manifest)
    services = make_services()
    http = serve(services)
    for r in (
        http.post("/v1/capabilities/demo.echo", json={"text": "abc"}),
        http.post("/v1/tasks", json={"capability": "demo.echo", "input": {"text": "abc"}}),
    ):
        error = _error(r, 500, "SCHEMA_UNUSABLE")
        assert error["message"].startswith("the input schema of demo.echo cannot be checked: ")
        assert "bad escape \\p" in error["message"]
        assert "crank lint" in error["hint"]
        assert "retry-after" not in r.headers
    assert sum(services.broker.stats().pending.values()) == 0


def test_deprecated_ids_that_route_in_a_loop_are_a_500_naming_the_loop(
    make_services: Any, serve: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not a 503 UNAVAILABLE (a temporary state, worth a retry): the manifests served
    are wrong until they are fixed."""
    from . import conftest

    manifest = tmp_path / "crank.yaml"
    loop = (
        "  - {id: demo.loop_a, replaced_by: [demo.loop_b], sunset: 2099-12-31}\n"
        "  - {id: demo.loop_b, replaced_by: [demo.loop_a], sunset: 2099-12-31}\n"
    )
    manifest.write_text(conftest.HTTP_MANIFEST.read_text().rstrip("\n") + "\n" + loop)
    monkeypatch.setattr(conftest, "HTTP_MANIFEST", manifest)
    http = serve(make_services())
    for r in (
        http.post("/v1/capabilities/demo.loop_a", json={"text": "a"}),
        http.post("/v1/tasks", json={"capability": "demo.loop_a", "input": {"text": "a"}}),
    ):
        error = _error(r, 500, "MANIFEST_ERROR")
        assert "demo.loop_a -> demo.loop_b -> demo.loop_a" in error["message"]
        assert "retry-after" not in r.headers


@pytest.mark.parametrize("name", ["", "billing:v2", "x" * 65, "a b"])
def test_a_caller_name_the_server_cannot_use_is_400(client: Client, name: str) -> None:
    body = {"capability": "demo.echo", "input": {"text": "x"}}
    r = client.post("/v1/tasks", json=body, headers={"X-Crank-Caller": name})
    error = _error(r, 400, "INVALID_INPUT")
    assert error["errors"][0]["path"] == "header:X-Crank-Caller"


def test_a_whole_float_priority_is_an_integer(client: Client) -> None:
    body = {"capability": "demo.echo", "input": {"text": "x"}, "priority": 38.0}
    r = client.post("/v1/tasks", json=body)
    assert (r.status_code, r.json()["priority"]) == (202, 38)
    body["priority"] = 38.5
    _error(client.post("/v1/tasks", json=body), 400, "INVALID_INPUT")
