"""The HTTP API at unit level (Starlette TestClient, in-memory broker, inline worker)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

InlineWorker = Any
RuntimeServices = Any

if TYPE_CHECKING:
    from httpx import Client as TestClient


def test_health_is_live(client: TestClient) -> None:
    r = client.get("/health")
    assert (r.status_code, r.json()) == (200, {"status": "ok", "problems": []})
    assert r.headers["x-request-id"]


def test_submit_queues_and_task_completes(client: TestClient, worker: InlineWorker) -> None:
    r = client.post("/v1/tasks", json={"capability": "demo.echo", "input": {"text": "hi"}})
    assert r.status_code == 202, r.text
    body = r.json()
    assert r.headers["location"] == f"/v1/tasks/{body['id']}" == body["location"]
    assert body["status"] == "pending"
    import time

    deadline = time.monotonic() + 60
    while (got := client.get(r.headers["location"]).json())["status"] != "succeeded":
        assert time.monotonic() < deadline, got
        time.sleep(0.01)
    assert got["result"] == {"text": "hi"}
    assert got["requested"] == "demo.echo"


def test_sync_call_returns_the_output(client: TestClient, worker: InlineWorker) -> None:
    r = client.post("/v1/capabilities/demo.echo", json={"text": "hey", "shout": True})
    assert (r.status_code, r.json()) == (200, {"text": "HEY"})
    assert r.headers["x-crank-task-id"]


def test_invalid_input_is_refused_before_queueing(
    client: TestClient, services: RuntimeServices
) -> None:
    r = client.post("/v1/tasks", json={"capability": "demo.echo", "input": {"text": 5, "extra": 1}})
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["code"] == "INVALID_INPUT"
    # paths point into the body the client sent: the input is at $.input of the envelope
    assert [e["path"] for e in err["errors"]] == ["$.input", "$.input.text"]
    assert (
        services.broker.stats().pending == {} or sum(services.broker.stats().pending.values()) == 0
    )


def test_envelope_errors_name_their_paths(client: TestClient) -> None:
    r = client.post("/v1/tasks", json={"input": {}, "priority": "high"})
    assert r.status_code == 400
    assert [e["path"] for e in r.json()["error"]["errors"]] == ["$.capability", "$.priority"]
    r = client.post("/v1/tasks", content=b"{not json", headers={"content-type": "application/json"})
    assert (r.status_code, r.json()["error"]["code"]) == (400, "INVALID_INPUT")
    r = client.post("/v1/tasks", json=[1, 2])
    assert r.status_code == 400


def test_a_task_shows_its_input_and_caller_where_the_list_does_not(client: TestClient) -> None:
    body = {"capability": "demo.echo", "input": {"text": "what was asked"}}
    submitted = client.post("/v1/tasks", json=body, headers={"X-Crank-Caller": "billing"})
    assert submitted.status_code == 202
    assert submitted.json()["caller"] == "billing"
    assert "input" not in submitted.json()  # the caller sent it: no echo of a big input
    task = client.get(f"/v1/tasks/{submitted.json()['id']}").json()
    assert (task["input"], task["caller"]) == ({"text": "what was asked"}, "billing")
    [listed] = client.get("/v1/tasks", params={"caller": "billing"}).json()["tasks"]
    assert listed["caller"] == "billing" and "input" not in listed
    anonymous = client.post("/v1/tasks", json=body).json()
    assert client.get(f"/v1/tasks/{anonymous['id']}").json()["caller"] is None


def test_unknown_capability_and_task_are_404(client: TestClient) -> None:
    r = client.post("/v1/tasks", json={"capability": "nope.nothing", "input": {}})
    assert (r.status_code, r.json()["error"]["code"]) == (404, "CAPABILITY_NOT_FOUND")
    r = client.get("/v1/tasks/does-not-exist")
    assert (r.status_code, r.json()["error"]["code"]) == (404, "TASK_NOT_FOUND")


def test_idempotency_key_returns_the_first_task(client: TestClient) -> None:
    body = {"capability": "demo.echo", "input": {"text": "once"}}
    first = client.post("/v1/tasks", json=body, headers={"Idempotency-Key": "k-1"})
    second = client.post("/v1/tasks", json=body, headers={"Idempotency-Key": "k-1"})
    assert first.status_code == second.status_code == 202
    assert first.json()["id"] == second.json()["id"]
    other = client.post("/v1/tasks", json=body, headers={"Idempotency-Key": "k-2"})
    assert other.json()["id"] != first.json()["id"]


def test_a_key_reused_with_another_input_or_capability_is_409_and_leaks_nothing(
    client: TestClient,
) -> None:
    key = {"Idempotency-Key": "k-1"}
    first = client.post(
        "/v1/tasks", json={"capability": "demo.echo", "input": {"text": "a"}}, headers=key
    )
    assert first.status_code == 202
    task_id = first.json()["id"]
    refused = [
        client.post(
            "/v1/tasks", json={"capability": "demo.echo", "input": {"text": "b"}}, headers=key
        ),
        client.post(
            "/v1/tasks", json={"capability": "demo.slow", "input": {"seconds": 0}}, headers=key
        ),
        client.post("/v1/capabilities/demo.slow", json={"seconds": 0}, headers=key),
        client.post("/echo", json={"text": "c"}, headers=key),
    ]
    for r in refused:
        assert r.status_code == 409, r.text
        error = r.json()["error"]
        assert error["code"] == "IDEMPOTENCY_KEY_REUSED"
        assert "another capability or input" in error["message"]
        assert task_id not in r.text
        assert "x-crank-task-id" not in r.headers


@pytest.mark.parametrize("key", [b"", b"a b", b"k" * 201, "cl\u00e9".encode("latin-1")])
def test_an_idempotency_key_outside_its_rule_is_400(client: TestClient, key: bytes) -> None:
    body = {"capability": "demo.echo", "input": {"text": "x"}}
    r = client.post("/v1/tasks", json=body, headers=[(b"Idempotency-Key", key)])
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["errors"][0]["path"] == "header:Idempotency-Key"
    assert f"(got {len(key)} characters)" in error["message"]


def test_the_longest_idempotency_key_is_accepted(client: TestClient) -> None:
    body = {"capability": "demo.echo", "input": {"text": "x"}}
    r = client.post("/v1/tasks", json=body, headers={"Idempotency-Key": "~" * 200})
    assert r.status_code == 202, r.text


def test_two_callers_with_the_same_key_get_their_own_tasks(client: TestClient) -> None:
    body = {"capability": "demo.echo", "input": {"text": "same"}}
    ids = {
        caller: client.post(
            "/v1/tasks", json=body, headers={"Idempotency-Key": "k", "X-Crank-Caller": caller}
        ).json()["id"]
        for caller in ("billing", "reports")
    }
    anonymous = client.post("/v1/tasks", json=body, headers={"Idempotency-Key": "k"}).json()["id"]
    assert len({*ids.values(), anonymous}) == 3
    again = client.post(
        "/v1/tasks", json=body, headers={"Idempotency-Key": "k", "X-Crank-Caller": "billing"}
    )
    assert again.json()["id"] == ids["billing"]


def test_legacy_route_answers_with_deprecation_headers(
    client: TestClient, worker: InlineWorker
) -> None:
    r = client.post("/echo", json={"text": "old"}, headers={"X-Crank-Caller": "billing-app"})
    assert (r.status_code, r.json()) == (200, {"text": "old"})
    assert r.headers["deprecation"] == "@1767225600"
    assert r.headers["sunset"] == "Thu, 31 Dec 2099 23:59:59 GMT"
    assert r.headers["link"] == '</v1/capabilities/demo.echo>; rel="successor-version"'
    metrics = client.get("/metrics").text
    assert (
        'crank_deprecated_calls_total{caller="billing-app",capability="demo.legacy_echo"} 1.0'
        in metrics
    )


def test_a_deprecated_id_serves_a_client_pinned_to_another_major(
    client: TestClient, worker: InlineWorker
) -> None:
    """Its clients pinned the old capability's major, which its successor (demo.echo,
    1.0.0) need not share: they are served until the sunset, not stranded by a 404."""
    for pinned in ("demo.legacy_echo@1", "demo.legacy_echo@2"):
        r = client.post(f"/v1/capabilities/{pinned}", json={"text": "old"})
        assert (r.status_code, r.json()) == (200, {"text": "old"}), pinned
        assert r.headers["deprecation"] == "@1767225600"
    r = client.post("/v1/capabilities/demo.echo@2", json={"text": "x"})
    assert (r.status_code, r.json()["error"]["code"]) == (404, "CAPABILITY_NOT_FOUND")


#: what every answer through demo.legacy_echo says of it (its manifest's deprecation).
LEGACY_ECHO_HEADERS = {
    "deprecation": "@1767225600",
    "sunset": "Thu, 31 Dec 2099 23:59:59 GMT",
    "link": '</v1/capabilities/demo.echo>; rel="successor-version"',
}


def test_refusals_of_a_deprecated_id_carry_its_deprecation_headers(
    make_services: Any, serve: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The client whose input is wrong, or who is told to come back later, learns that
    the id it calls is deprecated, as a client whose call succeeded does."""
    from crank.runtime.worker_reports import WorkerHealth

    services = make_services(max_pending_tasks=1)
    services.status.ttl_s = 0.0
    http = serve(services)
    typo = {"txt": "x"}
    answers = {
        "call, invalid input": http.post("/v1/capabilities/demo.legacy_echo", json=typo),
        "legacy route, invalid input": http.post("/echo", json=typo),
        "legacy route, not JSON": http.post(
            "/echo", content=b"{}", headers={"Content-Type": "text/plain"}
        ),
        "submit, invalid input": http.post(
            "/v1/tasks", json={"capability": "demo.legacy_echo", "input": typo}
        ),
    }
    queued = http.post("/v1/tasks", json={"capability": "demo.echo", "input": {"text": "a"}})
    assert queued.status_code == 202  # the queue is full now
    answers["call, queue full"] = http.post("/echo", json={"text": "b"})
    answers["submit, queue full"] = http.post(
        "/v1/tasks", json={"capability": "demo.legacy_echo", "input": {"text": "b"}}
    )
    failed = WorkerHealth("demo", ("demo.echo",), "failed", "ImportError: no module named x")
    monkeypatch.setattr(services.status, "unavailable", lambda capability: failed)
    answers["call, worker unavailable"] = http.post("/echo", json={"text": "c"})
    answers["submit, worker unavailable"] = http.post(
        "/v1/tasks", json={"capability": "demo.legacy_echo", "input": {"text": "c"}}
    )
    statuses = {what: r.status_code for what, r in answers.items()}
    assert statuses == {
        "call, invalid input": 400,
        "legacy route, invalid input": 400,
        "legacy route, not JSON": 415,
        "submit, invalid input": 400,
        "call, queue full": 429,
        "submit, queue full": 429,
        "call, worker unavailable": 503,
        "submit, worker unavailable": 503,
    }
    for what, r in answers.items():
        assert {name: r.headers.get(name) for name in LEGACY_ECHO_HEADERS} == (
            LEGACY_ECHO_HEADERS
        ), what
    # a live id's refusal announces nothing
    live = http.post("/v1/capabilities/demo.echo", json=typo)
    assert live.status_code == 503
    assert not {"deprecation", "sunset", "link"} & set(live.headers)


def test_retired_capability_is_410_naming_successors(client: TestClient) -> None:
    for r in (
        client.post("/retired", json={"text": "x"}),
        client.post("/v1/tasks", json={"capability": "demo.retired", "input": {"text": "x"}}),
        client.post("/v1/capabilities/demo.retired", json={"text": "x"}),
    ):
        assert r.status_code == 410
        assert r.json()["error"]["successors"] == ["demo.echo"]
        # RFC 8594: the refusal says when the id retired, and where it went (RFC 8288)
        assert r.headers["sunset"] == "Fri, 31 Jan 2020 23:59:59 GMT"
        assert r.headers["link"] == '</v1/capabilities/demo.echo>; rel="successor-version"'


def test_streaming_capability_over_sse(client: TestClient, worker: InlineWorker) -> None:
    with client.stream(
        "POST",
        "/v1/capabilities/demo.count",
        json={"n": 3},
        headers={"Accept": "text/event-stream"},
    ) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        data = [line for line in r.iter_lines() if line.startswith("data: ")]
    assert data[:3] == ['data: {"i": 1}', 'data: {"i": 2}', 'data: {"i": 3}']
    assert '"events": 3' in data[3]
    r = client.post("/v1/capabilities/demo.count", json={"n": 2})
    assert r.json() == {"events": [{"i": 1}, {"i": 2}]}


@pytest.mark.parametrize(
    ("accept", "streamed"),
    [
        ("application/json, text/event-stream;q=0", False),  # q=0: "not acceptable"
        ("text/event-stream;q=0.5, application/json", False),
        ("text/event-stream;q=0.5, */*;q=0.1", True),
        ("text/event-stream, application/json;q=0.9", True),
        ("Text/Event-Stream", True),
    ],
)
def test_the_answer_follows_the_accept_headers_preference(
    client: TestClient, worker: InlineWorker, accept: str, streamed: bool
) -> None:
    # "text/event-stream" anywhere in Accept meant a stream, even refused with q=0
    r = client.post("/v1/capabilities/demo.count", json={"n": 2}, headers={"Accept": accept})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream") is streamed, accept


def test_sync_call_times_out_with_504_and_a_location(
    client: TestClient, worker: InlineWorker
) -> None:
    r = client.post("/v1/capabilities/demo.slow", json={"seconds": 2.6})
    assert r.status_code == 504
    assert r.headers["location"] == f"/v1/tasks/{r.json()['error']['id']}"


def test_capabilities_list_schemas_and_deprecations(client: TestClient) -> None:
    doc = client.get("/v1/capabilities").json()
    assert [c["id"] for c in doc["capabilities"]] == [
        "demo.count",
        "demo.echo",
        "demo.slow",
        "demo.summarize",
    ]
    echo = next(c for c in doc["capabilities"] if c["id"] == "demo.echo")
    assert echo["input"]["required"] == ["text"]
    assert {d["id"]: d["gone"] for d in doc["deprecated"]} == {
        "demo.legacy_echo": False,
        "demo.retired": True,
    }


def test_ready_and_status_report(client: TestClient) -> None:
    assert client.get("/ready").json() == {"status": "ready", "problems": []}
    report = client.get("/v1/status").json()
    assert (report["overall_health"], report["problems"]) == ("healthy", [])
    assert set(report) >= {
        "timestamp",
        "overall_health",
        "worker_pool_health",
        "queue_health",
        "resource_utilization",
    }
    assert set(report["queue_health"]) >= {
        "total_pending_tasks",
        "oldest_task_age_seconds",
        "bottleneck_agent",
    }


def test_not_ready_and_critical_without_workers(make_services: Any, serve: Any) -> None:
    http = serve(make_services(min_workers=1))
    r = http.get("/ready")
    assert (r.status_code, r.json()["problems"]) == (503, ["0 of min 1 worker processes healthy"])
    report = http.get("/v1/status").json()
    assert (report["overall_health"], report["problems"]) == (
        "critical",
        ["no healthy worker process"],
    )


def test_deeply_nested_body_is_a_clear_400(client: TestClient) -> None:
    body = b'{"capability": "demo.echo", "input": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    r = client.post("/v1/tasks", content=body, headers={"content-type": "application/json"})
    assert (r.status_code, r.json()["error"]["code"]) == (400, "INVALID_INPUT")
