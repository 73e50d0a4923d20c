"""Daily LLM budget: warning at 80 %, non-essential capabilities paused (503) at 100 %."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

from crank.manifest import load_manifest
from crank.routing import Router
from crank.runtime import status_tracker as status_tracker_module
from crank.runtime import usage as usage_module
from crank.runtime.brokers import open_broker
from crank.runtime.config import RuntimeConfig
from crank.runtime.http.services import build_services
from crank.runtime.logs import configure_logging
from crank.runtime.status_tracker import StatusTracker
from crank.runtime.usage import UsageStore

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


@dataclass
class Budgeted:
    """A server whose daily LLM budget is 1 USD (demo.summarize is non-essential), the
    usage it reads, its status tracker and its JSON log lines."""

    http: Any
    usage: UsageStore
    status: StatusTracker
    stream: io.StringIO

    def spend(self, cost_usd: float) -> None:
        """Record ``cost_usd`` and make the next request read the budget afresh."""
        self.usage.record("demo.summarize", "fake-llm-1", 10, 5, cost_usd)
        self.status._budget = (-1e18, self.status._budget[1])  # skip the 1 s cache

    def alerts(self) -> list[dict[str, Any]]:
        lines = self.stream.getvalue().splitlines()
        return [json.loads(line) for line in lines if '"llm_budget"' in line]


@pytest.fixture
def budgeted(
    tmp_path: Path,
    serve: Any,
    http_workers_path: Path,
    logging_restored: None,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Budgeted]:
    # one UTC day throughout: a run across midnight would record on one day, read another
    for module in (usage_module, status_tracker_module):
        monkeypatch.setattr(module, "utc_day", lambda now=None: "2026-06-15")
    stream = io.StringIO()
    configure_logging("prod", stream=stream)
    broker = open_broker("memory://")
    usage = UsageStore(tmp_path / "usage.db")
    try:
        router = Router.from_manifests([load_manifest(http_workers_path / "crank.yaml")])
        config = RuntimeConfig(broker_url="memory://", min_workers=0, daily_budget_usd=1.0)
        status = StatusTracker(
            broker,
            min_workers=0,
            usage=usage,
            daily_budget_usd=1.0,
            non_essential=["demo.summarize"],
            ttl_s=0,
        )
        http = serve(build_services(config, broker, router, status=status))
        yield Budgeted(http, usage, status, stream)
    finally:
        usage.close()
        broker.close()


def test_budget_warns_then_pauses_non_essential(budgeted: Budgeted) -> None:
    http = budgeted.http
    body = {"capability": "demo.summarize", "input": {"text": "a b c"}}

    budgeted.spend(0.85)
    assert http.post("/v1/tasks", json=body).status_code == 202
    metrics = http.get("/metrics").text
    assert 'crank_llm_budget_alerts_total{level="warning"} 1.0' in metrics
    assert "crank_llm_budget_used_ratio 0.85" in metrics

    budgeted.spend(0.20)
    r = http.post("/v1/tasks", json=body)
    assert (r.status_code, r.json()["error"]["code"]) == (503, "CAPABILITY_PAUSED")
    assert "budget" in r.json()["error"]["message"]
    assert 0 < int(r.headers["retry-after"]) <= 86400
    rejected = 'crank_requests_rejected_total{reason="paused"} 1.0'
    assert rejected in http.get("/metrics").text
    # essential capabilities keep working
    ok = http.post("/v1/tasks", json={"capability": "demo.echo", "input": {"text": "x"}})
    assert ok.status_code == 202
    caps = {c["id"]: c["paused"] for c in http.get("/v1/capabilities").json()["capabilities"]}
    assert caps == {
        "demo.count": False,
        "demo.echo": False,
        "demo.slow": False,
        "demo.summarize": True,
    }
    report = http.get("/v1/status").json()
    assert report["overall_health"] == "degraded"
    assert report["llm_budget"]["level"] == "exhausted"
    assert report["paused_capabilities"] == ["demo.summarize"]
    assert [(a["budget_level"], a["used_percentage"], a["level"]) for a in budgeted.alerts()] == [
        ("warning", 85.0, "warning"),
        ("exhausted", 105.0, "warning"),
    ]


def test_a_jump_past_the_budget_alerts_every_threshold_it_crossed(budgeted: Budgeted) -> None:
    """From 60 % to 180 % of the budget between two reads: the warning threshold was
    crossed too, and is alerted before the exhaustion (each once); the paused
    capability's refusals are counted as rejected requests."""
    http = budgeted.http
    body = {"capability": "demo.summarize", "input": {"text": "a b c"}}

    budgeted.spend(0.6)
    assert http.post("/v1/tasks", json=body).status_code == 202
    assert "crank_llm_budget_alerts_total{" not in http.get("/metrics").text

    budgeted.spend(1.2)
    for _ in range(2):
        refused = http.post("/v1/tasks", json=body)
        assert refused.json()["error"]["code"] == "CAPABILITY_PAUSED"
    sync = http.post("/v1/capabilities/demo.summarize", json={"text": "a b c"})
    assert sync.json()["error"]["code"] == "CAPABILITY_PAUSED"
    budgeted.status._budget = (-1e18, budgeted.status._budget[1])
    http.get("/v1/status")  # read again: nothing announced twice
    metrics = http.get("/metrics").text
    assert 'crank_llm_budget_alerts_total{level="warning"} 1.0' in metrics
    assert 'crank_llm_budget_alerts_total{level="exhausted"} 1.0' in metrics
    assert 'crank_requests_rejected_total{reason="paused"} 3.0' in metrics
    assert [(a["budget_level"], a["used_percentage"]) for a in budgeted.alerts()] == [
        ("warning", 180.0),
        ("exhausted", 180.0),
    ]
