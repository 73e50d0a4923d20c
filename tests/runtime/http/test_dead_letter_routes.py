"""Dead letters over HTTP, in-process (a real uvicorn, the memory broker): list, redrive
one or all of a capability, purge one or all, every refusal, the token, the document."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from crank.runtime.brokers.contract import ClaimOptions

if TYPE_CHECKING:
    from httpx import Client

    from crank.runtime.http.services import RuntimeServices

BAD = {"code": "BAD", "message": "it broke", "type": "RuntimeError"}


def dead_letter(client: Client, services: RuntimeServices, text: str = "x") -> str:
    """A task of demo.echo queued over HTTP that ended dead (a crash, as a worker reports it)."""
    answer = client.post("/v1/tasks", json={"capability": "demo.echo", "input": {"text": text}})
    assert answer.status_code == 202, answer.text
    task_id = str(answer.json()["id"])
    broker = services.broker
    [claim] = broker.claim(ClaimOptions("w1", limit=1, block_s=5.0))
    assert claim.task.id == task_id
    assert broker.fail(claim, BAD, retryable=False) == "dead"
    return task_id


def test_list_redrive_and_purge_one(client: Client, services: RuntimeServices) -> None:
    first, second = dead_letter(client, services, "a"), dead_letter(client, services, "b")
    listed = client.get("/v1/dead-letters").json()
    assert [t["id"] for t in listed["tasks"]] == [second, first]
    assert all(t["status"] == "dead" for t in listed["tasks"])

    answer = client.post(f"/v1/dead-letters/{first}/redrive")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["id"], body["status"], body["attempts"], body["error"], body["outcome"]) == (
        first,
        "pending",
        0,
        None,
        "redriven",
    )
    assert client.get(f"/v1/tasks/{first}").json()["status"] == "pending"

    purged = client.delete(f"/v1/dead-letters/{second}")
    assert purged.status_code == 200, purged.text
    assert (purged.json()["status"], purged.json()["outcome"]) == ("dead", "purged")
    assert client.get(f"/v1/tasks/{second}").status_code == 404
    assert client.get("/v1/dead-letters").json()["tasks"] == []


def test_redrive_and_purge_all_of_a_capability(client: Client, services: RuntimeServices) -> None:
    ids = [dead_letter(client, services, str(n)) for n in range(3)]
    answer = client.post("/v1/capabilities/demo.echo/dead-letters/redrive")
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"capability": "demo.echo", "outcome": "redriven", "count": 3}
    pending = client.get("/v1/tasks", params={"status": "pending"}).json()["tasks"]
    assert sorted(t["id"] for t in pending) == sorted(ids)

    for _ in ids:  # dead again
        [claim] = services.broker.claim(ClaimOptions("w1", limit=1, block_s=5.0))
        services.broker.fail(claim, BAD, retryable=False)
    other = client.delete("/v1/capabilities/demo.other/dead-letters")
    assert other.json() == {"capability": "demo.other", "outcome": "purged", "count": 0}
    gone = client.delete("/v1/capabilities/demo.echo/dead-letters")
    assert gone.status_code == 200, gone.text
    assert gone.json() == {"capability": "demo.echo", "outcome": "purged", "count": 3}
    assert all(client.get(f"/v1/tasks/{i}").status_code == 404 for i in ids)


@pytest.mark.parametrize("act", ["redrive", "purge"])
def test_what_is_not_a_dead_letter_is_refused(
    client: Client, services: RuntimeServices, act: str
) -> None:
    def send(task_id: str) -> Any:
        if act == "redrive":
            return client.post(f"/v1/dead-letters/{task_id}/redrive")
        return client.delete(f"/v1/dead-letters/{task_id}")

    missing = send("no-such-task")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "TASK_NOT_FOUND"
    pending = client.post("/v1/tasks", json={"capability": "demo.echo", "input": {"text": "p"}})
    task_id = pending.json()["id"]
    refused = send(task_id)
    assert refused.status_code == 409, refused.text
    error = refused.json()["error"]
    assert (error["code"], error["id"], error["task_status"]) == (
        "NOT_A_DEAD_LETTER",
        task_id,
        "pending",
    )
    assert error["hint"]
    assert client.get(f"/v1/tasks/{task_id}").json()["status"] == "pending"


@pytest.mark.parametrize("method", ["POST", "DELETE"])
def test_a_bulk_action_names_a_capability_of_a_sane_length(
    client: Client, services: RuntimeServices, method: str
) -> None:
    task_id = dead_letter(client, services)
    suffix = "/redrive" if method == "POST" else ""
    answer = client.request(method, f"/v1/capabilities/{'x' * 201}/dead-letters{suffix}")
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["code"] == "INVALID_INPUT"
    assert [e["path"] for e in error["errors"]] == ["path:capability"]
    assert client.get(f"/v1/tasks/{task_id}").json()["status"] == "dead"  # untouched


def test_every_dead_letter_route_needs_the_token(make_services: Any, serve: Any) -> None:
    http = serve(make_services(api_token="s3cret-token"))
    sends = [
        ("GET", "/v1/dead-letters"),
        ("POST", "/v1/dead-letters/some-id/redrive"),
        ("DELETE", "/v1/dead-letters/some-id"),
        ("POST", "/v1/capabilities/demo.echo/dead-letters/redrive"),
        ("DELETE", "/v1/capabilities/demo.echo/dead-letters"),
    ]
    for method, path in sends:
        assert http.request(method, path).status_code == 401, (method, path)
    auth = {"Authorization": "Bearer s3cret-token"}
    assert http.get("/v1/dead-letters", headers=auth).status_code == 200
    answer = http.post("/v1/capabilities/demo.echo/dead-letters/redrive", headers=auth)
    assert answer.json()["count"] == 0


def test_the_dead_letter_routes_are_documented(client: Client) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    operations = {
        paths["/v1/dead-letters"]["get"]["operationId"],
        paths["/v1/capabilities/{capability}/dead-letters"]["delete"]["operationId"],
        paths["/v1/capabilities/{capability}/dead-letters/redrive"]["post"]["operationId"],
        paths["/v1/dead-letters/{task_id}"]["delete"]["operationId"],
        paths["/v1/dead-letters/{task_id}/redrive"]["post"]["operationId"],
    }
    assert operations == {
        "listDeadLetters",
        "purgeDeadLetters",
        "redriveDeadLetters",
        "purgeDeadLetter",
        "redriveDeadLetter",
    }
    one = paths["/v1/dead-letters/{task_id}/redrive"]["post"]["responses"]
    assert sorted(one) == ["200", "400", "401", "404", "409", "413", "429", "503"]
    purge = paths["/v1/dead-letters/{task_id}"]["delete"]["responses"]
    assert sorted(purge) == ["200", "400", "401", "404", "409", "413", "429", "500", "503"]
    assert purge["500"]["description"].startswith("TASK_NOT_JSON: done, but ")
    bulk = paths["/v1/capabilities/{capability}/dead-letters/redrive"]["post"]
    assert sorted(bulk["responses"]) == ["200", "400", "401", "413", "429", "503"]
    assert bulk["parameters"][0]["required"] is True


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("DELETE", "/v1/capabilities/demo.echo/dead-letters"),
        ("POST", "/v1/capabilities/demo.echo/dead-letters/redrive"),
        ("DELETE", "/v1/dead-letters/{id}"),
        ("POST", "/v1/dead-letters/{id}/redrive"),
    ],
)
def test_a_query_parameter_is_refused_and_nothing_changes(
    client: Client, services: RuntimeServices, method: str, path: str
) -> None:
    """A filter these routes do not take (``?older_than=``) must not act on every dead
    letter as if it were not there."""
    task_id = dead_letter(client, services)
    answer = client.request(method, path.format(id=task_id) + "?older_than=7d")
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["errors"] == [
        {"path": "query:older_than", "message": "not a parameter of this route"}
    ]
    assert client.get(f"/v1/tasks/{task_id}").json()["status"] == "dead"
