"""/openapi.json is valid OpenAPI 3.1 and built from the manifests' schemas."""

from __future__ import annotations

from typing import Any

import pytest


def test_openapi_document_is_valid_3_1(client: Any) -> None:
    validator = pytest.importorskip(
        "openapi_spec_validator", reason="pip install openapi-spec-validator to check the document"
    )
    spec = client.get("/openapi.json").json()
    validator.validate(spec)
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
    envelopes = paths["/v1/tasks"]["post"]["requestBody"]["content"]["application/json"]["schema"][
        "oneOf"
    ]
    assert [e["properties"]["capability"]["const"] for e in envelopes] == [
        "demo.count", "demo.echo", "demo.slow", "demo.summarize"
    ]  # fmt: skip
    stream = paths["/v1/capabilities/demo.count"]["post"]["responses"]["200"]["content"]
    assert set(stream) == {"application/json", "text/event-stream"}
    events = paths["/v1/tasks/{task_id}/events"]["get"]
    assert [(p["in"], p["name"]) for p in events["parameters"]] == [
        ("path", "task_id"),
        ("header", "Last-Event-ID"),
        ("query", "after"),
    ]
    assert set(events["responses"]["200"]["content"]) == {"text/event-stream"}
    assert {"400", "401", "404", "409"} <= set(events["responses"])
