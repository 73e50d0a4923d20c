"""/openapi.json is valid OpenAPI 3.1 and says what the server really does: the schemas
the manifests declare, the input a deprecated id's shim really takes, the events a
stream sends, every status code with its error schema and headers.

The fuzzer (tests/runtime/serve/test_schemathesis.py) checks the document against a
running server; these tests pin what it says."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from jsonschema import Draft202012Validator

from crank.errors import ValidationFailed
from crank.manifest import load_manifest
from crank.routing import Router
from crank.runtime.brokers import open_broker
from crank.runtime.config import RuntimeConfig
from crank.runtime.http.app import create_app
from crank.runtime.http.openapi import build_openapi
from crank.runtime.http.routes import ROUTES
from crank.runtime.http.services import build_services

from .conftest import BROKER_ROUTES, UNAVAILABLE_CODES, documented_503_codes

if TYPE_CHECKING:
    from collections.abc import Iterator

    from httpx import Client

EMAIL_MANIFEST = (
    Path(__file__).resolve().parents[3]
    / "plugins/crank-email-classifier/src/crank_email_classifier/crank.yaml"
)
BEFORE_SUNSET = dt.date(2026, 12, 1)


def test_openapi_document_is_valid_3_1(client: Client) -> None:
    from openapi_spec_validator import validate

    spec = client.get("/openapi.json").json()
    validate(spec)
    assert spec["openapi"] == "3.1.0"
    paths = spec["paths"]
    assert {
        "/v1/tasks",
        "/v1/tasks/{task_id}",
        "/v1/tasks/{task_id}/events",
        "/v1/capabilities/demo.echo",
        "/echo",
        "/retired",
    } <= set(paths)
    echo = paths["/v1/capabilities/demo.echo"]["post"]
    assert echo["requestBody"]["content"]["application/json"]["schema"]["required"] == ["text"]
    assert echo["responses"]["200"]["content"]["application/json"]["schema"]["required"] == ["text"]
    assert paths["/echo"]["post"]["deprecated"] is True
    # the manifest's examples are the operation's request examples
    body = echo["requestBody"]["content"]["application/json"]
    assert body["examples"] == {"hello": {"value": {"text": "hello"}}}


def _body_schema(operation: dict[str, Any]) -> Any:
    return operation["requestBody"]["content"]["application/json"]["schema"]


def test_every_status_a_route_answers_is_declared_with_its_error_schema(client: Client) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    declared = {
        (path, method): sorted(op["responses"])
        for path, ops in paths.items()
        for method, op in ops.items()
    }
    assert declared[("/v1/tasks", "post")] == [
        "202", "400", "401", "404", "409", "410", "413", "415", "429", "500", "503",
    ]  # fmt: skip
    assert declared[("/v1/tasks/{task_id}", "get")] == [
        "200", "400", "401", "404", "413", "429", "500", "503",
    ]  # fmt: skip
    [task_id, wait] = paths["/v1/tasks/{task_id}"]["get"]["parameters"]
    assert (task_id["name"], wait["name"], wait["in"], wait["required"]) == (
        "task_id", "wait", "query", False,
    )  # fmt: skip
    assert wait["schema"] == {"type": "number", "minimum": 0, "maximum": 55, "default": 0}
    assert declared[("/v1/tasks/{task_id}/events", "get")] == [
        "200", "400", "401", "404", "409", "413", "429", "503",
    ]  # fmt: skip
    assert declared[("/v1/capabilities/demo.echo", "post")] == [
        "200", "400", "401", "409", "413", "415", "422", "429", "500", "502", "503", "504",
    ]  # fmt: skip
    assert declared[("/echo", "post")] == [
        "200", "400", "401", "409", "410", "413", "415", "422", "429", "500", "502", "503",
        "504",
    ]  # fmt: skip
    # past its sunset a deprecated id answers 410 whatever the input
    assert declared[("/retired", "post")] == ["400", "401", "410", "413", "415", "429"]
    # the probes answer their own body when they fail, naming the problems
    assert declared[("/health", "get")] == ["200", "503"]
    for (path, method), statuses in declared.items():
        for status in statuses:
            reply = paths[path][method]["responses"][status]
            if int(status) >= 400 and path not in ("/ready", "/health"):
                assert reply["content"] == {
                    "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
                }, (path, method, status)


def test_headers_are_declared_with_their_rules(client: Client) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    submit = paths["/v1/tasks"]["post"]
    key = next(p for p in submit["parameters"] if p["name"] == "Idempotency-Key")
    assert key["schema"] == {
        "type": "string",
        "minLength": 1,
        "maxLength": 200,
        "pattern": "^[!-~]+$",
    }
    assert submit["responses"]["202"]["headers"]["Location"]["required"] is True
    assert submit["responses"]["429"]["headers"]["Retry-After"]["required"] is True
    assert submit["responses"]["401"]["headers"]["WWW-Authenticate"]["required"] is True
    legacy = paths["/echo"]["post"]["responses"]
    for status in ("200", "422", "500", "502", "504"):
        assert {"Deprecation", "Sunset", "Link", "X-Crank-Task-Id"} <= set(
            legacy[status]["headers"]
        )
        assert all(h["required"] for h in legacy[status]["headers"].values())
    assert legacy["504"]["headers"]["Location"]["required"] is True
    # a refusal of the call announces the deprecation too, unless the guard refused it
    # before the route (its 401, a declared body too large, OVERLOADED)
    for status, required in (("400", True), ("409", True), ("415", True), ("503", True)):
        headers = legacy[status]["headers"]
        assert [headers[h]["required"] for h in ("Deprecation", "Sunset", "Link")] == [required] * 3
    for status in ("413", "429"):
        headers = legacy[status]["headers"]
        assert [headers[h]["required"] for h in ("Deprecation", "Sunset", "Link")] == [False] * 3
    assert "Deprecation" not in legacy["401"].get("headers", {})
    assert "Deprecation" not in legacy["410"]["headers"]
    for status in ("400", "409", "413", "415", "429", "503"):
        assert submit["responses"][status]["headers"]["Deprecation"]["required"] is False
    assert "Deprecation" not in submit["responses"]["404"].get("headers", {})
    live = paths["/v1/capabilities/demo.echo"]["post"]["responses"]
    assert set(live["200"]["headers"]) == {"X-Crank-Task-Id"}


def test_a_429_names_the_codes_each_route_answers(client: Client) -> None:
    """Which 429 is which, and that each comes with Retry-After: OVERLOADED anywhere,
    QUEUE_FULL where a task is queued, CONCURRENCY_LIMIT on a synchronous call."""
    paths = client.get("/openapi.json").json()["paths"]
    codes = ("OVERLOADED", "QUEUE_FULL", "CONCURRENCY_LIMIT")
    for path, method, answered in (
        ("/v1/tasks", "get", codes[:1]),
        ("/v1/tasks", "post", codes[:2]),
        ("/v1/capabilities/demo.echo", "post", codes),
        ("/echo", "post", codes),
        ("/retired", "post", codes[:1]),
    ):
        reply = paths[path][method]["responses"]["429"]
        assert [c for c in codes if c in reply["description"]] == list(answered), path
        assert reply["headers"]["Retry-After"]["required"] is True


def test_a_503_names_the_codes_it_answers_and_when_to_retry(client: Client) -> None:
    """A generated client reads which 503 is which, and that the broker's comes with a
    Retry-After, from the document: a route that calls no capability names the broker's
    code alone, a call or a submit all three."""
    spec = client.get("/openapi.json").json()
    documented = documented_503_codes(spec)
    assert {route: documented[route] for route in BROKER_ROUTES} == {
        route: ("BROKER_UNAVAILABLE",) for route in BROKER_ROUTES
    }
    calls = {route: codes for route, codes in documented.items() if route not in BROKER_ROUTES}
    assert {("/v1/tasks", "post"), ("/v1/capabilities/demo.echo", "post"), ("/echo", "post")} <= (
        set(calls)
    )
    assert set(calls.values()) == {UNAVAILABLE_CODES}
    for path, method in documented:
        retry_after = spec["paths"][path][method]["responses"]["503"]["headers"]["Retry-After"]
        assert "second" in retry_after["description"], (path, method)
        # the broker's 503 always says when; a worker that failed to load never does
        assert retry_after["required"] is ((path, method) in BROKER_ROUTES), (path, method)


def test_the_task_envelope_requires_input_and_names_every_field(client: Client) -> None:
    schema = _body_schema(client.get("/openapi.json").json()["paths"]["/v1/tasks"]["post"])
    envelopes = schema["oneOf"]
    assert [e["properties"]["capability"]["const"] for e in envelopes] == [
        "demo.count", "demo.echo", "demo.slow", "demo.summarize", "demo.legacy_echo",
    ]  # fmt: skip
    assert all(e["required"] == ["capability", "input"] for e in envelopes)
    assert all(e["additionalProperties"] is False for e in envelopes)
    assert envelopes[-1]["deprecated"] is True
    validator = Draft202012Validator(schema)
    assert validator.is_valid({"capability": "demo.echo", "input": {"text": "x"}})
    assert not validator.is_valid({"capability": "demo.echo"})
    assert not validator.is_valid({"capability": "demo.echo", "input": {"text": "x"}, "x": 1})


def test_sse_events_are_documented_as_the_objects_they_are(client: Client) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    stream = paths["/v1/capabilities/demo.count"]["post"]["responses"]["200"]["content"]
    assert set(stream) == {"application/json", "text/event-stream"}
    event = Draft202012Validator(stream["text/event-stream"]["schema"])
    assert event.is_valid({"id": "1", "event": "message", "data": '{"i": 1}'})
    assert event.is_valid({"id": "3", "event": "end", "data": '{"id": "t", "events": 3}'})
    assert not event.is_valid("data: {}")
    assert not event.is_valid({"event": "message", "data": "{}"})  # message events are numbered
    events = paths["/v1/tasks/{task_id}/events"]["get"]
    assert [(p["in"], p["name"]) for p in events["parameters"]] == [
        ("path", "task_id"),
        ("header", "Last-Event-ID"),
        ("query", "after"),
        ("query", "wait"),
    ]
    message = events["responses"]["200"]["content"]["text/event-stream"]["schema"]["oneOf"][0]
    # the data of a message event is the output of the streaming capability (demo.count)
    assert message["properties"]["data"]["contentSchema"]["required"] == ["i"]


@pytest.fixture
def email_services() -> Iterator[Any]:
    broker = open_broker("memory://")
    router = Router.from_manifests([load_manifest(EMAIL_MANIFEST)], today=lambda: BEFORE_SUNSET)
    config = RuntimeConfig(broker_url="memory://", manifest_paths=(EMAIL_MANIFEST,), min_workers=0)
    yield build_services(config, broker, router)
    broker.close()


CLASSIFY_INPUTS = [
    {"text": "hello"},  # no selector: the default successor (spam)
    {"type": "bill", "text": "Amount due: $5"},
    {"type": "spam", "text": "hi", "subject": "s"},
    {},
    {"type": "bill"},
    {"type": "invoice", "text": "x"},
    {"type": None, "text": "x"},
    {"text": "x", "unknown": 1},
    {"type": "bill", "text": ""},
]


@pytest.mark.parametrize("data", CLASSIFY_INPUTS, ids=lambda d: str(sorted(d.items())))
def test_a_split_shims_schema_takes_exactly_what_the_shim_takes(
    email_services: Any, data: dict[str, Any]
) -> None:
    doc = build_openapi(ROUTES, email_services.router)
    for path in ("/classify", "/v1/capabilities/email.classification"):
        documented = Draft202012Validator(_body_schema(doc["paths"][path]["post"])).is_valid(data)
        try:
            email_services.gateway.prepare("email.classification", data)
        except ValidationFailed:
            accepted = False
        else:
            accepted = True
        assert documented == accepted, (path, data)


def test_a_split_shims_output_is_any_successors(email_services: Any) -> None:
    doc = build_openapi(ROUTES, email_services.router)
    answer = doc["paths"]["/classify"]["post"]["responses"]["200"]["content"]["application/json"]
    labels = [branch["properties"]["label"]["enum"] for branch in answer["schema"]["anyOf"]]
    assert labels == [["spam", "ham"], ["bill", "not_bill"]]


def test_the_document_served_is_the_one_built(email_services: Any, serve: Any) -> None:
    http = serve(email_services)
    assert http.get("/openapi.json").json() == build_openapi(
        ROUTES, email_services.router, version=email_services.version
    )
    assert create_app(email_services).routes  # mounted from the same table


def test_a_410_carries_the_headers_the_document_requires(client: Client) -> None:
    """Past its sunset an id still says when it retired and where it went: the document
    promises Sunset and Link on every 410, and each 410 carries them."""
    paths = client.get("/openapi.json").json()["paths"]
    calls = {
        ("/retired", "post"): {"text": "x"},
        ("/v1/tasks", "post"): {"capability": "demo.retired", "input": {"text": "x"}},
    }
    for (path, method), body in calls.items():
        documented = paths[path][method]["responses"]["410"]["headers"]
        assert {name for name, h in documented.items() if h["required"]} == {"Sunset", "Link"}
        answer = client.request(method, path, json=body)
        assert answer.status_code == 410
        for name in documented:
            assert answer.headers.get(name), (path, name)
    echo = paths["/echo"]["post"]["responses"]  # a deprecated id may retire while served
    assert set(echo["410"]["headers"]) == {"Sunset", "Link"}
