"""Prometheus metrics: scrape-time queue/pool gauges, worker counters, bounded route labels."""

from __future__ import annotations

from crank.runtime.health_report import SystemSnapshot
from crank.runtime.http.guard import metric_route, request_ids, route_templates
from crank.runtime.http.routes import ROUTES
from crank.runtime.metrics import ServerMetrics, TaskMetricsPlugin, worker_metrics
from crank.runtime.usage import BudgetState


def snapshot() -> SystemSnapshot:
    return SystemSnapshot(
        broker_ok=True,
        min_workers=1,
        total_workers=3,
        healthy_workers=2,
        busy_workers=1,
        queue_depth={"a.x": 4, "b.y": 0},
        oldest_task_age_s=7.5,
        running_tasks=1,
        dead_letters=2,
        paused_capabilities=("b.y",),
        backing_off={"a.x": 3},
    )


def test_scrape_reads_queue_pool_and_budget() -> None:
    metrics = ServerMetrics(snapshot, lambda: BudgetState("warning", 8.0, 10.0))
    value = metrics.registry.get_sample_value
    assert value("crank_queue_depth", {"capability": "a.x"}) == 4
    assert value("crank_queue_depth", {"capability": "b.y"}) == 0
    assert value("crank_queue_backing_off", {"capability": "a.x"}) == 3
    assert value("crank_queue_backing_off", {"capability": "b.y"}) == 0
    assert value("crank_workers", {"state": "healthy"}) == 2
    assert value("crank_tasks_running") == 1
    assert value("crank_dead_letters") == 2
    assert value("crank_oldest_pending_task_age_seconds") == 7.5
    assert value("crank_capability_paused", {"capability": "b.y"}) == 1
    assert value("crank_llm_budget_used_ratio") == 0.8
    body, content_type = metrics.render()
    assert content_type.startswith("text/plain")
    assert b"crank_broker_up 1.0" in body


def test_served_capabilities_with_no_queued_task_read_zero() -> None:
    metrics = ServerMetrics(snapshot, capabilities=["a.x", "c.z"])
    value = metrics.registry.get_sample_value
    assert value("crank_queue_depth", {"capability": "a.x"}) == 4
    assert value("crank_queue_depth", {"capability": "c.z"}) == 0
    assert value("crank_queue_backing_off", {"capability": "c.z"}) == 0


def test_task_finished_hook_counts_outcomes() -> None:
    registry = worker_metrics().registry
    key = {"capability": "m.t", "status": "dead"}
    before = registry.get_sample_value("crank_tasks_total", key) or 0.0
    dead_before = (
        registry.get_sample_value("crank_dead_lettered_total", {"capability": "m.t"}) or 0.0
    )
    plugin = TaskMetricsPlugin()
    plugin.crank_task_finished(capability="m.t", status="dead", duration_s=0.5)
    plugin.crank_task_finished(capability="m.t", status="retrying", duration_s=0.1)
    assert registry.get_sample_value("crank_tasks_total", key) == before + 1
    assert (
        registry.get_sample_value("crank_dead_lettered_total", {"capability": "m.t"})
        == dead_before + 1
    )
    assert (registry.get_sample_value("crank_task_retries_total", {"capability": "m.t"}) or 0) >= 1


def test_route_labels_stay_bounded() -> None:
    known = frozenset({"/v1/tasks", "/echo"})
    templates = route_templates(e.path for e in ROUTES)

    def label(path: str) -> str:
        return metric_route(path, known, "/ui", templates)

    assert label("/v1/tasks") == "/v1/tasks"
    assert label("/v1/tasks/abc123") == "/v1/tasks/{id}"
    assert label("/v1/tasks/abc123/events") == "/v1/tasks/{id}/events"
    assert label("/v1/capabilities/demo.echo") == "/v1/capabilities/{id}"
    # each dead-letter route is its own label (they were "other", and the capability
    # ones were counted with the synchronous calls)
    assert label("/v1/dead-letters/abc123") == "/v1/dead-letters/{id}"
    assert label("/v1/dead-letters/abc123/redrive") == "/v1/dead-letters/{id}/redrive"
    assert label("/v1/capabilities/demo.echo/dead-letters") == "/v1/capabilities/{id}/dead-letters"
    assert (
        label("/v1/capabilities/demo.echo/dead-letters/redrive")
        == "/v1/capabilities/{id}/dead-letters/redrive"
    )
    assert label("/ui/tasks/abc") == "/ui"
    assert label("/wp-admin/login.php") == "other"
    assert label("/v1/tasks/abc/nothing-here") == "other"
    assert label("/v1/tasks//events") == "other"  # an empty id is no task
    assert label("/echo") == "/echo"


def test_request_ids_reject_malformed_input() -> None:
    good = {
        "headers": [
            (b"x-request-id", b"abc-1"),
            (b"traceparent", b"00-" + b"a" * 32 + b"-" + b"b" * 16 + b"-01"),
        ]
    }
    assert request_ids(good) == ("abc-1", "a" * 32)
    rid, trace = request_ids(
        {"headers": [(b"x-request-id", b"bad id\n"), (b"traceparent", b"junk")]}
    )
    assert rid != "bad id\n" and len(rid) == 32
    assert len(trace) == 32
