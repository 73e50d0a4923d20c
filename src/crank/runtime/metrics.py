"""Prometheus metrics of the runtime.

Where each number comes from (worker processes are separate processes):

* **worker processes** count what they run (``crank_tasks_total`` by capability and
  status, ``crank_task_duration_seconds``, retries, dead letters, LLM tokens and
  cost) in the files of prometheus-client's *multiprocess mode*, written by
  :mod:`crank.runtime.task_metrics` without importing prometheus-client: the
  supervisor gives every child ``PROMETHEUS_MULTIPROC_DIR`` and ``/metrics`` adds the
  children's files up with ``MultiProcessCollector``. Counts survive a child's death
  because its file stays; the directory is emptied when ``crank run`` starts.
* **the queue** (depth per capability, running tasks, dead-letter size, oldest
  task age) and **the pool** (workers total/healthy/busy) are read from the
  broker and the supervisor at scrape time (:class:`RuntimeCollector`); while the
  broker does not answer, its numbers are left out and ``crank_broker_up`` is 0.
* **the HTTP server** counts requests, submissions, rejections (429 overload or a
  full queue, 413, 401, 503 paused) and calls to deprecated capabilities itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from crank.runtime.task_metrics import (
    DURATION_BUCKETS,
    MetricSpec,
    TaskMetricsPlugin,
    observe_batch,
    observe_llm_usage,
    observe_task,
    worker_metrics,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Sequence

    from prometheus_client.metrics_core import Metric

    from crank.runtime.health_report import SystemSnapshot
    from crank.runtime.usage import BudgetState

# -- server side ----------------------------------------------------------------------

#: budget thresholds crossed: counted by the process that watches the budget (with
#: several HTTP processes, the supervisor's, which writes it like a worker process does).
BUDGET_ALERTS = MetricSpec(
    "counter", "crank_llm_budget_alerts", "Daily budget thresholds crossed.", ("level",)
)


class RuntimeCollector:
    """Queue, pool and budget gauges read at scrape time."""

    def __init__(
        self,
        snapshot: Callable[[], SystemSnapshot],
        budget: Callable[[], BudgetState] | None = None,
        capabilities: Sequence[str] = (),
    ) -> None:
        self._snapshot = snapshot
        self._budget = budget
        self._capabilities = tuple(capabilities)

    def collect(self) -> Iterator[Metric]:
        snap = self._snapshot()
        yield from _queue_gauges(snap, self._capabilities)
        workers = GaugeMetricFamily("crank_workers", "Worker processes by state.", labels=["state"])
        workers.add_metric(["total"], snap.total_workers)
        workers.add_metric(["healthy"], snap.healthy_workers)
        if snap.busy_workers is not None:  # counted from the broker's running tasks
            workers.add_metric(["busy"], snap.busy_workers)
        yield workers
        yield GaugeMetricFamily(
            "crank_broker_up", "1 when the broker answers.", value=int(snap.broker_ok)
        )
        states = GaugeMetricFamily(
            "crank_worker_state",
            "1 for the state each worker is in (starting, ready, not_ready, failed).",
            labels=["worker", "state"],
        )
        for name, worker in sorted(snap.workers.items()):
            states.add_metric([name, worker.state], 1)
        yield states
        yield GaugeMetricFamily(
            "crank_worker_process_crashes",
            "Worker processes that died without being asked to in the last five minutes.",
            value=snap.crashed_workers,
        )
        yield CounterMetricFamily(
            "crank_worker_processes_replaced_unlive",
            "Worker processes stopped and replaced for staying not live.",
            value=snap.replaced_unlive_workers,
        )
        paused = GaugeMetricFamily(
            "crank_capability_paused",
            "1 for capabilities paused by the budget.",
            labels=["capability"],
        )
        for cap in snap.paused_capabilities:
            paused.add_metric([cap], 1)
        yield paused
        if self._budget is not None:
            state = self._budget()
            yield GaugeMetricFamily(
                "crank_llm_cost_today_usd", "LLM cost recorded today (UTC).", value=state.spent_usd
            )
            if state.budget_usd is not None:
                yield GaugeMetricFamily(
                    "crank_llm_budget_used_ratio",
                    "Today's LLM cost over the daily budget.",
                    value=state.ratio,
                )


def _queue_gauges(snap: SystemSnapshot, capabilities: Sequence[str] = ()) -> Iterator[Metric]:
    """The gauges read from the broker; while it does not answer, their samples are left
    out (nothing is known: a zero would clear an alert on ``crank_dead_letters > 0``)
    and ``crank_broker_up`` 0 says why. Each of ``capabilities`` (those served here)
    has its depth, 0 when none of its tasks waits: a series that vanished as its queue
    emptied would read as "no data" on a dashboard, not as an empty queue."""
    depth = GaugeMetricFamily(
        "crank_queue_depth", "Pending tasks per capability.", labels=["capability"]
    )
    backing_off = GaugeMetricFamily(
        "crank_queue_backing_off",
        "Of the pending tasks, retries waiting out their backoff, per capability.",
        labels=["capability"],
    )
    if snap.queue_depth is not None:
        backing = snap.backing_off or {}
        queued = {**dict.fromkeys(capabilities, 0), **snap.queue_depth}
        for cap, n in sorted(queued.items()):
            depth.add_metric([cap], n)
            backing_off.add_metric([cap], backing.get(cap, 0))
    yield depth
    yield backing_off
    if snap.running_tasks is not None:
        yield GaugeMetricFamily(
            "crank_tasks_running", "Tasks claimed by a worker now.", value=snap.running_tasks
        )
    if snap.dead_letters is not None:
        yield GaugeMetricFamily(
            "crank_dead_letters", "Tasks in the dead-letter queue.", value=snap.dead_letters
        )
    if snap.oldest_task_age_s is not None:
        yield GaugeMetricFamily(
            "crank_oldest_pending_task_age_seconds",
            "How long the longest-waiting task ready for a worker has waited "
            "(retries waiting out their backoff left out).",
            value=snap.oldest_task_age_s,
        )


class ServerMetrics:
    """The registry ``/metrics`` renders."""

    def __init__(
        self,
        snapshot: Callable[[], SystemSnapshot] | None = None,
        budget: Callable[[], BudgetState] | None = None,
        *,
        multiprocess_dir: Path | None = None,
        shared: bool = False,
        capabilities: Sequence[str] = (),
    ) -> None:
        self.registry = CollectorRegistry()
        # Several HTTP processes (``--http-processes``): each counts into its own file of
        # the multiprocess directory, and ``/metrics`` adds every process's files up, so
        # whichever process answers says the same. The counters then are not registered
        # here as well: the collector already reads their files (they would count twice).
        r: CollectorRegistry | None = self.registry
        if shared:
            if multiprocess_dir is None or not getattr(values.ValueClass, "_multiprocess", False):
                raise RuntimeError(
                    "shared server metrics need PROMETHEUS_MULTIPROC_DIR set before "
                    "prometheus_client is imported, and the directory"
                )
            r = None
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        self.http_requests = Counter(
            "crank_http_requests",
            "HTTP requests answered.",
            ["method", "route", "status"],
            registry=r,
        )
        self.submitted = Counter(
            "crank_tasks_submitted", "Tasks accepted into the queue.", ["capability"], registry=r
        )
        self.rejected = Counter(
            "crank_requests_rejected",
            "Requests refused before queueing, by reason (overload, body_too_large, "
            "unauthorized, paused, queue_full, concurrency_limit).",
            ["reason"],
            registry=r,
        )
        self.deprecated_calls = Counter(
            "crank_deprecated_calls",
            "Calls routed to a deprecated capability id.",
            ["capability", "caller"],
            registry=r,
        )
        self.sync_duration = Histogram(
            "crank_sync_call_duration_seconds",
            "Submit-to-result time of synchronous calls.",
            ["capability"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.sync_waits = Counter(
            "crank_sync_call_waits",
            "How synchronous calls learned that their task ended: 'notice' (pushed by whoever "
            "stored the outcome) or 'read' (the broker read after a wake-up, the safety poll "
            "or the timeout: a notice that did not come).",
            ["ended_by"],
            registry=r,
        )
        self.budget_alerts = Counter(
            BUDGET_ALERTS.name, BUDGET_ALERTS.help, BUDGET_ALERTS.labels, registry=r
        )
        if snapshot is not None:
            self.registry.register(RuntimeCollector(snapshot, budget, capabilities))
        #: what the worker processes counted (None: no worker processes report here).
        self._workers: Any = None
        if multiprocess_dir is not None:
            Path(multiprocess_dir).mkdir(parents=True, exist_ok=True)
            self._workers = multiprocess.MultiProcessCollector(
                self.registry, path=str(multiprocess_dir)
            )  # type: ignore[no-untyped-call]

    def child(self, metric: Any, *values: str) -> Any:
        """``metric.labels(*values)``, kept: ``labels()`` checks and locks on every call,
        and the request path asks for the same few children again and again."""
        key = (id(metric), values)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*values)
        return found

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def batches(self) -> dict[str, dict[str, Any]]:
        """What the worker processes' batches came to, per capability (``/v1/status``);
        empty when no worker process reports to this server or none batches."""
        if self._workers is None:
            return {}
        return batch_report(self._workers.collect())

    def task_outcomes(self) -> dict[tuple[str, str], float]:
        """Task attempts the worker processes finished since ``crank run`` started, by
        (capability, status), summed over the processes (the console's throughput);
        empty when no worker process reports to this server."""
        if self._workers is None:
            return {}
        counts: dict[tuple[str, str], float] = {}
        for metric in self._workers.collect():
            if metric.name != "crank_tasks":
                continue
            for sample in metric.samples:
                if sample.name == "crank_tasks_total":
                    key = (sample.labels["capability"], sample.labels["status"])
                    counts[key] = counts.get(key, 0.0) + sample.value
        return counts


def _batch_entry() -> dict[str, Any]:
    return {
        "batches": 0,
        "tasks": 0,
        "wait_s": 0.0,
        "released": dict.fromkeys(("full", "latency", "deadline"), 0),
    }


def batch_report(metrics: Iterable[Metric]) -> dict[str, dict[str, Any]]:
    """Per capability, what its batches came to: how many, their mean size, the mean
    time a task waited for its batch and how many were released for each reason."""
    found: dict[str, dict[str, Any]] = {}
    for metric in metrics:
        if metric.name not in ("crank_batches", "crank_batch_size", "crank_batch_wait_seconds"):
            continue
        for sample in metric.samples:
            entry = found.setdefault(sample.labels["capability"], _batch_entry())
            if sample.name == "crank_batches_total":
                reason = sample.labels["reason"]
                entry["released"][reason] = entry["released"].get(reason, 0) + int(sample.value)
            elif sample.name == "crank_batch_size_count":
                entry["batches"] += int(sample.value)
            elif sample.name == "crank_batch_size_sum":
                entry["tasks"] += int(sample.value)
            elif sample.name == "crank_batch_wait_seconds_sum":
                entry["wait_s"] += sample.value
    report = {}
    for capability, entry in sorted(found.items()):
        batches, tasks = entry["batches"], entry["tasks"]
        report[capability] = {
            "batches": batches,
            "tasks": tasks,
            "mean_batch_size": round(tasks / batches, 2) if batches else 0.0,
            "mean_wait_ms": round(1000.0 * entry["wait_s"] / tasks, 3) if tasks else 0.0,
            "released": entry["released"],
        }
    return report


def sample_value(registry: Any, name: str, labels: dict[str, str] | None = None) -> float | None:
    """One sample's value (tests and ``crank status``)."""
    value = registry.get_sample_value(name, labels or {})
    return None if value is None else float(value)


__all__ = [
    "BUDGET_ALERTS",
    "DURATION_BUCKETS",
    "RuntimeCollector",
    "ServerMetrics",
    "TaskMetricsPlugin",
    "batch_report",
    "observe_batch",
    "observe_llm_usage",
    "observe_task",
    "sample_value",
    "worker_metrics",
]
