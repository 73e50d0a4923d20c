"""Task control over HTTP, in-process (a real uvicorn, the memory broker): listing tasks,
cancelling one, redriving and purging dead letters, and every refusal on the way."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

import pytest

from crank.client import ApiError
from crank.client import Client as CrankClient
from crank.runtime.brokers.contract import ClaimOptions

from .conftest import WAIT_S, ScriptedWorker

if TYPE_CHECKING:
    from httpx import Client

    from crank.runtime.brokers.contract import Broker, Claim
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
        ("cursor=9579557806361382505", "query:cursor"),  # past a signed 64-bit position
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
    assert sorted(operation["responses"]) == ["200", "400", "401", "413", "429", "500", "503"]
    page = document["components"]["schemas"]["TaskPage"]
    assert page["properties"]["tasks"]["items"] == {"$ref": "#/components/schemas/TaskSummary"}


# -- cancelling ------------------------------------------------------------------------------


def test_a_pending_task_is_cancelled_and_never_runs(
    client: Client, services: RuntimeServices, inline_worker: Any
) -> None:
    task_id = submit(client, "never")
    answer = client.delete(f"/v1/tasks/{task_id}")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["id"], body["status"], body["outcome"]) == (task_id, "cancelled", "cancelled")
    assert "never run" in body["message"]
    assert body["error"]["code"] == "CANCELLED"
    assert body["cancel_requested_at"] is not None
    after = submit(client, "after")
    with inline_worker(services.broker):
        done = wait_done(client, after)
    assert done["status"] == "succeeded"
    assert client.get(f"/v1/tasks/{task_id}").json()["status"] == "cancelled"
    assert client.get(f"/v1/tasks/{task_id}").json()["attempts"] == 0
    # asking again: it has ended
    again = client.delete(f"/v1/tasks/{task_id}")
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "TASK_FINISHED"
    assert again.json()["error"]["task_status"] == "cancelled"


def wait_done(client: Client, task_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + WAIT_S
    while True:
        doc: dict[str, Any] = client.get(f"/v1/tasks/{task_id}").json()
        if doc["status"] in ("succeeded", "failed", "dead", "cancelled"):
            return doc
        assert time.monotonic() < deadline, doc
        time.sleep(0.01)


def test_a_running_task_is_told_and_the_answer_says_so(
    client: Client, services: RuntimeServices
) -> None:
    told: list[str] = []
    services.broker.listen_for_cancels("scripted", told.append)
    task_id = submit(client, "running")

    def stop_when_told(broker: Broker, claim: Claim, go: threading.Event) -> None:
        assert go.wait(WAIT_S)
        broker.fail(claim, {"code": "TIMEOUT", "message": "stopped"}, retryable=True)

    with ScriptedWorker(services.broker, stop_when_told) as worker:
        deadline = time.monotonic() + WAIT_S
        while client.get(f"/v1/tasks/{task_id}").json()["status"] != "running":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        answer = client.delete(f"/v1/tasks/{task_id}")
        assert answer.status_code == 202, answer.text
        body = answer.json()
        assert (body["status"], body["outcome"]) == ("running", "stopping")
        assert "ctx.cancelled" in body["message"]
        assert told == [task_id]
        worker.go.set()
    ended = wait_done(client, task_id)
    assert ended["status"] == "cancelled"
    assert ended["error"]["message"] == "cancelled while it ran"


def test_cancelling_what_is_not_there_or_has_ended(
    client: Client, services: RuntimeServices, inline_worker: Any
) -> None:
    missing = client.delete("/v1/tasks/no-such-task")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "TASK_NOT_FOUND"
    task_id = submit(client, "done")
    with inline_worker(services.broker):
        wait_done(client, task_id)
    finished = client.delete(f"/v1/tasks/{task_id}")
    assert finished.status_code == 409
    error = finished.json()["error"]
    assert (error["code"], error["id"], error["task_status"]) == (
        "TASK_FINISHED",
        task_id,
        "succeeded",
    )
    assert error["hint"]


def test_a_waiting_call_whose_task_is_cancelled_answers_409(
    client: Client, services: RuntimeServices
) -> None:
    answers: list[Any] = []
    caller = threading.Thread(
        target=lambda: answers.append(client.post("/v1/capabilities/demo.echo", json={"text": "x"}))
    )
    caller.start()
    deadline = time.monotonic() + WAIT_S
    while not (tasks := client.get("/v1/tasks", params={"status": "pending"}).json()["tasks"]):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    [task] = tasks
    assert client.delete(f"/v1/tasks/{task['id']}").status_code == 200
    caller.join(WAIT_S)
    [answer] = answers
    assert answer.status_code == 409
    error = answer.json()["error"]
    assert (error["code"], error["id"]) == ("CANCELLED", task["id"])
    assert error["task_error"]["message"] == "cancelled before it ran"
    # like every answer of a task that was queued, it names the task
    assert answer.headers["X-Crank-Task-Id"] == task["id"]


def test_the_python_client_cancels(client: Client, services: RuntimeServices) -> None:
    with CrankClient(str(client.base_url)) as crank:
        task = crank.submit("demo.echo", {"text": "x"})
        info = task.cancel()
        assert (info.id, info.status, info.done) == (task.id, "cancelled", True)
        assert info.cancel_requested_at is not None
        with pytest.raises(ApiError) as refused:
            task.cancel()
        assert (refused.value.status, refused.value.code) == (409, "TASK_FINISHED")
        assert task.status().status == "cancelled"


def test_cancel_is_documented(client: Client) -> None:
    operation = client.get("/openapi.json").json()["paths"]["/v1/tasks/{task_id}"]["delete"]
    assert operation["operationId"] == "cancelTask"
    assert sorted(operation["responses"]) == [
        "200",
        "202",
        "400",
        "401",
        "404",
        "409",
        "413",
        "429",
        "500",
        "503",
    ]
