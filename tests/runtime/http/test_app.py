"""The HTTP API at unit level (Starlette TestClient, in-memory broker, inline worker)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from httpx import Client as TestClient
    from tests.runtime.http.conftest import InlineWorker


def test_health_is_live(client: TestClient) -> None:
    r = client.get("/health")
    assert (r.status_code, r.json()) == (200, {"status": "ok"})
    assert r.headers["x-request-id"]


def test_submit_queues_and_task_completes(client: TestClient, worker: InlineWorker) -> None:
    r = client.post("/v1/tasks", json={"capability": "demo.echo", "input": {"text": "hi"}})
    assert r.status_code == 202, r.text
    body = r.json()
    assert r.headers["location"] == f"/v1/tasks/{body['id']}" == body["location"]
    assert body["status"] == "pending"
    import time

    for _ in range(200):
        got = client.get(r.headers["location"]).json()
        if got["status"] == "succeeded":
            break
        time.sleep(0.01)
    assert got["result"] == {"text": "hi"}
    assert got["requested"] == "demo.echo"


def test_sync_call_returns_the_output(client: TestClient, worker: InlineWorker) -> None:
    r = client.post("/v1/capabilities/demo.echo", json={"text": "hey", "shout": True})
    assert (r.status_code, r.json()) == (200, {"text": "HEY"})
    assert r.headers["x-crank-task-id"]
