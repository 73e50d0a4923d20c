"""What a worker process counts (tasks, batches, LLM usage) and how it writes it down.

The metrics are declared once here (:data:`TASK_METRICS`). Under ``crank run`` the
supervisor gives each worker process ``PROMETHEUS_MULTIPROC_DIR`` and ``/metrics`` adds
up the files written there with prometheus-client's ``MultiProcessCollector``. A worker
writes those files with prometheus-client's own file format code (its ``mmap_dict`` and
``utils`` modules, loaded from their files alone) without importing the package:
``import prometheus_client`` brings its HTTP exposition with it (``http.server``,
``urllib``, ``ssl``), about 7 MB of a worker process's 30. The values are laid out as
prometheus-client's multiprocess mode lays them out (a counter's ``_total``, a
histogram's ``_sum`` and one non-cumulative ``_bucket`` per bound, ``+Inf`` included);
a test holds the two to the same scrape.

Without ``PROMETHEUS_MULTIPROC_DIR`` (tests, ``crank invoke``) the counts go to a
registry of this process (:func:`worker_metrics`), readable there.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from crank.hookspecs import hookimpl

if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import ModuleType

MULTIPROC_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"

DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
#: tasks per batch (``batching:`` allows up to 4,096).
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
#: how long a task waited for its batch (``max_latency_ms`` is usually a few ms).
BATCH_WAIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 60)


@dataclass(frozen=True)
class MetricSpec:
    """One metric a worker process writes."""

    kind: Literal["counter", "histogram"]
    #: the name without a counter's ``_total`` (as prometheus-client keeps it).
    name: str
    help: str
    labels: tuple[str, ...]
    buckets: tuple[float, ...] = ()


TASKS = MetricSpec(
    "counter", "crank_tasks", "Task attempts by capability and outcome.", ("capability", "status")
)
DURATION = MetricSpec(
    "histogram",
    "crank_task_duration_seconds",
    "Wall time of task attempts.",
    ("capability",),
    DURATION_BUCKETS,
)
RETRIES = MetricSpec(
    "counter", "crank_task_retries", "Attempts that will be retried.", ("capability",)
)
DEAD = MetricSpec(
    "counter", "crank_dead_lettered", "Tasks moved to the dead-letter queue.", ("capability",)
)
LLM_CALLS = MetricSpec(
    "counter", "crank_llm_calls", "LLM calls recorded by handlers.", ("capability", "model")
)
LLM_TOKENS = MetricSpec(
    "counter",
    "crank_llm_tokens",
    "LLM tokens recorded by handlers.",
    ("capability", "model", "direction"),
)
LLM_COST = MetricSpec(
    "counter", "crank_llm_cost_usd", "LLM cost in US dollars.", ("capability", "model")
)
BATCH_SIZE = MetricSpec(
    "histogram",
    "crank_batch_size",
    "Tasks per batch handed to a batch handler.",
    ("capability",),
    BATCH_SIZE_BUCKETS,
)
BATCH_WAIT = MetricSpec(
    "histogram",
    "crank_batch_wait_seconds",
    "Time each task waited in its worker process for its batch to be released.",
    ("capability",),
    BATCH_WAIT_BUCKETS,
)
BATCHES = MetricSpec(
    "counter",
    "crank_batches",
    "Batches released, by why: full, latency (max_latency_ms passed) or deadline "
    "(a task's deadline came close).",
    ("capability", "reason"),
)
#: every metric a worker process writes, declared once.
TASK_METRICS = (
    TASKS,
    DURATION,
    RETRIES,
    DEAD,
    LLM_CALLS,
    LLM_TOKENS,
    LLM_COST,
    BATCH_SIZE,
    BATCH_WAIT,
    BATCHES,
)


def _module_of_prometheus_client(name: str) -> ModuleType:
    """prometheus-client's module ``name`` loaded from its file, without the package
    (whose ``__init__`` imports the HTTP exposition); it must import nothing of it."""
    spec = importlib.util.find_spec("prometheus_client")  # finds, does not import
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError("prometheus_client is not installed")
    path = Path(spec.origin).parent / f"{name}.py"
    loader_spec = importlib.util.spec_from_file_location(f"crank._prometheus_{name}", path)
    if loader_spec is None or loader_spec.loader is None:
        raise ModuleNotFoundError(f"prometheus_client/{name}.py not found at {path}")
    module = importlib.util.module_from_spec(loader_spec)
    loader_spec.loader.exec_module(module)
    return module


class MultiprocessFiles:
    """The files of this process in ``directory``, written as prometheus-client's
    multiprocess mode writes them (``counter_<pid>.db``, ``histogram_<pid>.db``)."""

    def __init__(self, directory: str, pid: int | None = None) -> None:
        self.directory = directory
        self.pid = os.getpid() if pid is None else pid
        self._lock = threading.Lock()
        mmap_dict = _module_of_prometheus_client("mmap_dict")
        self._open = mmap_dict.MmapedDict
        self._key = mmap_dict.mmap_key
        self._go_float = _module_of_prometheus_client("utils").floatToGoString
        self._files: dict[str, Any] = {}
        #: value and key of each series written so far, by (metric, sample, labels).
        self._values: dict[tuple[str, str, tuple[str, ...]], list[Any]] = {}
        #: a histogram's ``_sum`` and bucket series with their bounds, by (metric, labels).
        self._histograms: dict[tuple[str, tuple[str, ...]], tuple[list[Any], list[Any]]] = {}

    def _series(
        self, spec: MetricSpec, sample: str, names: Sequence[str], values: Sequence[str]
    ) -> list[Any]:
        """[key, value, file] of one series, read (and so created) on first use."""
        index = (spec.name, sample, tuple(values))
        series = self._values.get(index)
        if series is None:
            file = self._files.get(spec.kind)
            if file is None:
                path = str(Path(self.directory) / f"{spec.kind}_{self.pid}.db")
                file = self._files[spec.kind] = self._open(path)
            key = self._key(spec.name, spec.name + sample, list(names), list(values), spec.help)
            value, _ = file.read_value(key)
            series = self._values[index] = [key, value, file]
        return series

    def _add(self, series: list[Any], amount: float) -> None:
        series[1] += amount
        series[2].write_value(series[0], series[1], 0.0)

    def inc(self, spec: MetricSpec, labels: Sequence[str], amount: float = 1.0) -> None:
        with self._lock:
            self._add(self._series(spec, "_total", spec.labels, labels), amount)

    def _histogram(self, spec: MetricSpec, labels: Sequence[str]) -> tuple[list[Any], list[Any]]:
        """The ``_sum`` series and the (bound, series) of each bucket, made on first use:
        every bucket is there from the first observation, as prometheus-client has it."""
        index = (spec.name, tuple(labels))
        histogram = self._histograms.get(index)
        if histogram is None:
            names = (*spec.labels, "le")
            buckets = [
                (b, self._series(spec, "_bucket", names, (*labels, self._go_float(b))))
                for b in (*spec.buckets, float("inf"))
            ]
            total = self._series(spec, "_sum", spec.labels, labels)
            histogram = self._histograms[index] = (total, buckets)
        return histogram

    def observe(self, spec: MetricSpec, labels: Sequence[str], amounts: Sequence[float]) -> None:
        with self._lock:
            total, buckets = self._histogram(spec, labels)
            for amount in amounts:
                self._add(total, amount)
                for bound, bucket in buckets:
                    if amount <= bound:
                        self._add(bucket, 1.0)
                        break

    def close(self) -> None:
        with self._lock:
            for file in self._files.values():
                file.close()
            self._files.clear()
            self._values.clear()
            self._histograms.clear()


class _WorkerMetrics:
    """:data:`TASK_METRICS` in a registry of this process, for a process that writes no
    multiprocess files (tests, ``crank invoke``); prometheus-client is imported here."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = CollectorRegistry()
        self.metrics: dict[str, Any] = {
            spec.name: (
                Counter(spec.name, spec.help, spec.labels, registry=self.registry)
                if spec.kind == "counter"
                else Histogram(
                    spec.name, spec.help, spec.labels, buckets=spec.buckets, registry=self.registry
                )
            )
            for spec in TASK_METRICS
        }

    def inc(self, spec: MetricSpec, labels: Sequence[str], amount: float = 1.0) -> None:
        self.metrics[spec.name].labels(*labels).inc(amount)

    def observe(self, spec: MetricSpec, labels: Sequence[str], amounts: Sequence[float]) -> None:
        child = self.metrics[spec.name].labels(*labels)
        for amount in amounts:
            child.observe(amount)


_worker_metrics: _WorkerMetrics | None = None
_worker_lock = threading.Lock()


def worker_metrics() -> _WorkerMetrics:
    """The in-process registry (its ``registry`` readable by tests and ``crank invoke``)."""
    global _worker_metrics
    with _worker_lock:
        if _worker_metrics is None:
            _worker_metrics = _WorkerMetrics()
        return _worker_metrics


_files: MultiprocessFiles | None = None
_files_lock = threading.Lock()


def _sink() -> MultiprocessFiles | _WorkerMetrics:
    """This process's files when metrics go to ``PROMETHEUS_MULTIPROC_DIR``, else the
    in-process registry."""
    global _files
    directory = os.environ.get(MULTIPROC_DIR_ENV)
    if not directory:
        return worker_metrics()
    with _files_lock:
        if _files is None or _files.directory != directory or _files.pid != os.getpid():
            _files = MultiprocessFiles(directory)
        return _files


def close_files() -> None:
    """Close this process's metric files (they stay open for its life otherwise)."""
    global _files
    with _files_lock:
        if _files is not None:
            _files.close()
            _files = None


def observe_task(capability: str, status: str, duration_s: float) -> None:
    """A task attempt of ``capability`` ended ``status`` after ``duration_s``."""
    sink = _sink()
    sink.inc(TASKS, (capability, status))
    sink.observe(DURATION, (capability,), (max(0.0, duration_s),))
    if status == "retrying":
        sink.inc(RETRIES, (capability,))
    elif status == "dead":
        sink.inc(DEAD, (capability,))


def observe_ended_unrun(capability: str, status: str) -> None:
    """A task of ``capability`` ended ``status`` in a claim, no attempt of it running to
    its end (:meth:`Broker.ended_by_claims`): counted as an attempt that ended so (the
    one its dead worker never finished), without a duration."""
    sink = _sink()
    sink.inc(TASKS, (capability, status))
    if status == "dead":
        sink.inc(DEAD, (capability,))


def observe_batch(capability: str, size: int, reason: str, waits: Sequence[float]) -> None:
    """A batch of ``size`` tasks was released for ``reason``; ``waits``: each task's wait."""
    sink = _sink()
    sink.observe(BATCH_SIZE, (capability,), (float(size),))
    sink.inc(BATCHES, (capability, reason))
    sink.observe(BATCH_WAIT, (capability,), waits)


def observe_llm_usage(
    capability: str, model: str, input_tokens: int, output_tokens: int, cost_usd: float
) -> None:
    """One LLM call's usage, recorded by a handler."""
    sink = _sink()
    sink.inc(LLM_CALLS, (capability, model))
    sink.inc(LLM_TOKENS, (capability, model, "input"), input_tokens)
    sink.inc(LLM_TOKENS, (capability, model, "output"), output_tokens)
    sink.inc(LLM_COST, (capability, model), cost_usd)


class TaskMetricsPlugin:
    """Registered in worker processes: counts every finished attempt."""

    @hookimpl
    def crank_task_finished(self, capability: str, status: str, duration_s: float) -> None:
        observe_task(capability, status, duration_s)


__all__ = [
    "TASK_METRICS",
    "MetricSpec",
    "MultiprocessFiles",
    "TaskMetricsPlugin",
    "close_files",
    "observe_batch",
    "observe_ended_unrun",
    "observe_llm_usage",
    "observe_task",
    "worker_metrics",
]
