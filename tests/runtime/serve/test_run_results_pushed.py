"""``crank run``: synchronous calls are answered by the notice of their task's end.

The waiters' safety poll is turned off (``CRANK_RESULT_SAFETY_POLL_S`` set to an
hour), so an answer comes from the notice pushed when the task ends (on SQLite over
the local channel from the worker processes to the server, on Redis through the
server's one subscription), or only once the capability's timeout ran out, when the
server reads the task one last time. ``crank_sync_call_waits_total`` says which:
``ended_by="notice"`` or ``"read"``.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from .test_run_batching import metric

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
    assert ended_by(run) == {"notice": 64, "read": 0}


def subscriptions(run: Any, what: str) -> int:
    """How many times the log says a result-notice subscription was ``lost`` or
    ``restored`` (each HTTP process has its own, made on its first call)."""
    count = 0
    for line in run.log().splitlines():
        if line.startswith("{") and f'"redis_subscription_{what}"' in line:
            doc = json.loads(line)
            count += doc["event"] == f"redis_subscription_{what}" and ":n:" in doc["channel"]
    return count


def ended_by(run: Any) -> dict[str, int]:
    """How the server's synchronous calls so far learned their task ended."""
    text = httpx.get(f"{run.url}/metrics", timeout=60).text
    return {
        how: int(metric(text, "crank_sync_call_waits_total", ended_by=how))
        for how in ("notice", "read")
    }


@pytest.mark.parametrize("http_processes", ["1", "2"])
def test_sync_calls_are_answered_by_notices_after_redis_restarts(
    http_processes: str, crank_run: Any, redis_server_aof: Any
) -> None:
    """Redis killed and started again: the server's subscription is made afresh by
    itself, so calls after it are answered by notices too (without it they would wait
    out the capability's timeout: 504)."""
    run = crank_run(
        "--broker", redis_server_aof.url, "--min-workers", "2", "--max-workers", "2",
        "--http-processes", http_processes,
        env=NO_POLL,
    )  # fmt: skip

    def call(i: int) -> tuple[int, Any]:
        with httpx.Client(base_url=run.url, timeout=120) as http:
            r = http.post("/v1/capabilities/demo.echo", json={"text": f"t{i}"})
            return r.status_code, r.json()

    assert call(0) == (200, {"text": "t0"})
    redis_server_aof.restart(kill=True)
    # until the server's own connections are back, a call may be refused (503); never
    # a 504, which is what a call left waiting for a notice that cannot come would get
    deadline = time.monotonic() + 120
    while (answer := call(1))[0] != 200:
        assert answer[0] == 503, answer
        assert time.monotonic() < deadline, "the server never reached Redis again"
    assert answer == (200, {"text": "t1"})
    # that call may have been woken to read its task (its notice was published before
    # the subscription was back); so may a call to another HTTP process whose
    # subscription is not back yet. Once every one lost is back (the log says so), the
    # calls are told by their notices.
    lost = run.wait_until(lambda: subscriptions(run, "lost"), what="a subscription lost")
    run.wait_until(
        lambda: subscriptions(run, "restored") == subscriptions(run, "lost"),
        timeout_s=120,
        what=f"the {lost} result subscriptions lost to be restored",
    )
    before = ended_by(run)
    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(call, range(2, 34)))
    assert answers == [(200, {"text": f"t{i}"}) for i in range(2, 34)]
    after = ended_by(run)
    assert (after["notice"] - before["notice"], after["read"] - before["read"]) == (32, 0)
