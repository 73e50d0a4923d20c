"""``crank run``: synchronous calls are answered by the notice of their task's end.

The waiters' safety poll is turned off (``CRANK_RESULT_SAFETY_POLL_S`` set to an
hour), so an answer can only come from the notice pushed when the task ends: on
SQLite over the local channel from the worker processes to the server, on Redis
through the server's one subscription. Had a notice not come, the call would wait
out its capability's timeout and answer 504.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.slow

NO_POLL = {"CRANK_RESULT_SAFETY_POLL_S": "3600"}


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_sync_calls_are_answered_by_notices(
    backend: str, crank_run: Any, request: pytest.FixtureRequest
) -> None:
    args: tuple[str, ...] = ("--min-workers", "2", "--max-workers", "2")
    if backend == "redis":
        args = ("--broker", request.getfixturevalue("redis_server"), *args)
    run = crank_run(*args, env=NO_POLL)

    def call(i: int) -> tuple[int, Any]:
        with httpx.Client(base_url=run.url, timeout=60) as http:
            r = http.post("/v1/capabilities/demo.echo", json={"text": f"t{i}"})
            return r.status_code, r.json()

    # concurrent calls: their submits share round trips, each still gets its own answer
    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(call, range(64)))
    assert answers == [(200, {"text": f"t{i}"}) for i in range(64)]
