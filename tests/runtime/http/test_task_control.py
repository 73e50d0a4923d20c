"""Task control over HTTP, in-process (a real uvicorn, the memory broker): listing tasks,
cancelling one, redriving and purging dead letters, and every refusal on the way."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from crank.runtime.brokers.contract import ClaimOptions

if TYPE_CHECKING:
    from httpx import Client

    from crank.runtime.http.services import RuntimeServices


def submit(
    client: Client, text: str, *, caller: str | None = None, capability: str = "demo.echo"
) -> str:
    headers = {"X-Crank-Caller": caller} if caller else {}
    answer = client.post(
        "/v1/tasks", json={"capability": capability, "input": {"text": text}}, headers=headers
    )
    assert answer.status_code == 202, answer.text
    return str(answer.json()["id"])


def test_tasks_are_listed_newest_first_page_by_page(client: Client) -> None:
    ids = [submit(client, str(i)) for i in range(5)]
    first = client.get("/v1/tasks", params={"limit": 2})
    assert first.status_code == 200
    body = first.json()
    assert [t["id"] for t in body["tasks"]] == ids[:2:-1]
    assert body["next_cursor"]
    rest = client.get("/v1/tasks", params={"limit": 10, "cursor": body["next_cursor"]}).json()
    assert [t["id"] for t in rest["tasks"]] == ids[2::-1]
    assert rest["next_cursor"] is None
    summary = rest["tasks"][-1]
    assert summary == {
        "id": ids[0],
        "capability": "demo.echo",
        "requested": "demo.echo",
        "caller": None,
        "status": "pending",
        "priority": 0,
        "attempts": 0,
        "max_attempts": 3,
        "created_at": summary["created_at"],
        "updated_at": summary["updated_at"],
        "error": None,
    }


def test_filters_by_status_capability_and_caller(client: Client, services: RuntimeServices) -> None:
    mine = submit(client, "a", caller="billing")
    other = submit(client, "b", caller="reports")
    legacy = submit(client, "c", caller="billing", capability="demo.legacy_echo")
    [claim] = services.broker.claim(ClaimOptions("w1"))
    assert claim.task.id == mine
    services.broker.ack(claim, {"text": "a"})

    def ids(**params: str) -> list[str]:
        answer = client.get("/v1/tasks", params=params)
        assert answer.status_code == 200, answer.text
        return [t["id"] for t in answer.json()["tasks"]]

    assert ids() == [legacy, other, mine]
    assert ids(caller="billing") == [legacy, mine]
    assert ids(caller="reports") == [other]
    assert ids(status="succeeded") == [mine]
    assert ids(status="pending", caller="billing") == [legacy]
    assert ids(capability="demo.echo", caller="reports", status="pending") == [other]
    assert ids(capability="demo.count") == []
    [through_legacy] = client.get("/v1/tasks", params={"caller": "billing", "limit": 1}).json()[
        "tasks"
    ]
    assert (through_legacy["requested"], through_legacy["capability"]) == (
        "demo.legacy_echo",
        "demo.echo",
    )


@pytest.mark.parametrize(
    ("query", "where"),
    [
        ("status=bogus", "query:status"),
        ("limit=0", "query:limit"),
        ("limit=501", "query:limit"),
        ("limit=ten", "query:limit"),
        ("cursor=abc", "query:cursor"),
        ("cursor=", "query:cursor"),
        ("caller=no%20spaces", "query:caller"),
        ("capability=", "query:capability"),
        ("stauts=pending", "query:stauts"),
        ("status=pending&status=dead", "query:status"),
    ],
)
def test_a_bad_list_query_is_a_400_naming_the_parameter(
    client: Client, query: str, where: str
) -> None:
    answer = client.get(f"/v1/tasks?{query}")
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["code"] == "INVALID_INPUT"
    assert [e["path"] for e in error["errors"]] == [where]
    assert error["hint"]


def test_listing_needs_the_token_like_every_v1_route(make_services: Any, serve: Any) -> None:
    http = serve(make_services(api_token="s3cret-token"))
    assert http.get("/v1/tasks").status_code == 401
    answer = http.get("/v1/tasks", headers={"Authorization": "Bearer s3cret-token"})
    assert answer.status_code == 200
    assert answer.json() == {"tasks": [], "next_cursor": None}


def test_the_list_is_documented_with_its_parameters(client: Client) -> None:
    document = client.get("/openapi.json").json()
    operation = document["paths"]["/v1/tasks"]["get"]
    assert operation["operationId"] == "listTasks"
    assert [p["name"] for p in operation["parameters"]] == [
        "status",
        "capability",
        "caller",
        "cursor",
        "limit",
    ]
    assert sorted(operation["responses"]) == ["200", "400", "401", "413", "429", "503"]
    page = document["components"]["schemas"]["TaskPage"]
    assert page["properties"]["tasks"]["items"] == {"$ref": "#/components/schemas/TaskSummary"}
