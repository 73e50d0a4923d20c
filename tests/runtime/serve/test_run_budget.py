"""LLM usage recorded in worker processes adds up in the supervisor: metrics, warning, pause."""

from __future__ import annotations

import json
from typing import Any

import pytest

from crank.runtime.usage import UsageStore, utc_day

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("http_processes", ["1", "2"])
def test_usage_from_workers_drives_the_daily_budget(crank_run: Any, http_processes: str) -> None:
    # the budget is per UTC day, read from the clock of every process: a run that
    # straddles midnight records on one day and reads another, so it is run again
    # (it takes seconds, so the second run cannot straddle it too)
    for again in (False, True):
        day = utc_day()
        try:
            budget_scenario(crank_run, http_processes, again=again)
        except (AssertionError, TimeoutError):
            if utc_day() == day:
                raise
        else:
            if utc_day() == day:
                return
    pytest.fail("two runs straddled midnight UTC")  # pragma: no cover - cannot happen


def budget_scenario(crank_run: Any, http_processes: str, *, again: bool = False) -> None:
    """The test's run; ``again``: a second one beside the first (which may still run),
    with a queue and a usage file of its own."""
    env = {"CRANK_DAILY_BUDGET_USD": "1.0"}
    if again:
        env["CRANK_USAGE_DB"] = "usage-again.db"
    run = crank_run(
        "--min-workers", "1", "--max-workers", "1", "--http-processes", http_processes,
        env=env, db="queue-again.db" if again else "queue.db",
    )  # fmt: skip
    call = {"text": "one two three four five six seven", "cost_usd": 0.5}
    assert run.http.post("/v1/capabilities/demo.summarize", json=call).json() == {
        "summary": "one two three four five"
    }
    # the default file, in the working directory
    store = UsageStore(run.workdir / ("usage-again.db" if again else "crank-usage.db"))
    try:
        (row,) = store.rows()
        assert (row.capability, row.model, row.calls, row.input_tokens, row.output_tokens) == (
            "demo.summarize", "fake-llm-1", 1, 7, 5
        )  # fmt: skip
    finally:
        store.close()
    wanted = (
        'crank_llm_cost_usd_total{capability="demo.summarize",model="fake-llm-1"} 0.5',
        "crank_llm_cost_today_usd 0.5",  # the supervisor's view re-reads the file every second
    )

    def usage_metrics() -> str | None:
        text: str = run.http.get("/metrics").text
        return text if all(w in text for w in wanted) else None

    run.wait_until(usage_metrics, what="usage metrics from the worker process")
    # 0.9 of 1.0: warning; then 1.3: non-essential capabilities pause, essential ones go on
    run.http.post("/v1/capabilities/demo.summarize", json={**call, "cost_usd": 0.4})
    run.wait_until(
        lambda: '"budget_level": "warning"' in run.log(), what="the 80 % warning in the logs"
    )
    run.http.post("/v1/capabilities/demo.summarize", json={**call, "cost_usd": 0.4})
    paused = run.wait_until(
        lambda: (
            (
                r := run.http.post(
                    "/v1/tasks", json={"capability": "demo.summarize", "input": call}
                )
            ).status_code
            == 503
            and r
        ),
        what="demo.summarize paused",
    )
    assert paused.json()["error"]["code"] == "CAPABILITY_PAUSED"
    assert run.http.post("/v1/capabilities/demo.echo", json={"text": "still on"}).status_code == 200
    status = run.http.get("/v1/status").json()
    assert (status["llm_budget"]["level"], status["paused_capabilities"]) == (
        "exhausted",
        ["demo.summarize"],
    )
    run.wait_until(
        lambda: '"budget_level": "exhausted"' in run.log(), what="the 100 % alert in the logs"
    )
    # each threshold announced once, and counted once, whichever process serves
    alerts = [json.loads(x) for x in run.log().splitlines() if '"llm_budget"' in x]
    assert [a["budget_level"] for a in alerts] == ["warning", "exhausted"]
    counted = (
        'crank_llm_budget_alerts_total{level="warning"} 1.0',
        'crank_llm_budget_alerts_total{level="exhausted"} 1.0',
    )
    run.wait_until(
        lambda: all(c in run.http.get("/metrics").text for c in counted), what="alerts counted"
    )
    assert run.terminate() == 0
