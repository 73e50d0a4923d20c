"""A worker's metric files, written without prometheus-client's package, read as
prometheus-client's own multiprocess mode's files are: the same scrape, sample by sample.

Each side runs in a fresh interpreter (prometheus-client picks its multiprocess value
class when it is imported) and writes the same observations to a directory of its own;
``MultiProcessCollector`` then reads both.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest, multiprocess

from crank.runtime.task_metrics import TASK_METRICS

if TYPE_CHECKING:
    from pathlib import Path

#: what both sides record: tasks of two capabilities, a retry, a dead letter, a batch
#: (waits on bucket bounds and past the last one), LLM usage.
OBSERVATIONS = """
observe_task("a.one", "succeeded", 0.003)
observe_task("a.one", "succeeded", 0.25)
observe_task("a.one", "retrying", 1.5)
observe_task("b.two", "dead", 400.0)
observe_task("b.two", "succeeded", -1.0)
observe_batch("a.one", 64, "full", [0.0005, 0.001, 0.003, 61.0])
observe_batch("a.one", 3, "latency", [0.002])
observe_llm_usage("b.two", "gpt-x", 120, 30, 0.0042)
"""

#: prometheus-client's own multiprocess mode, with the same declarations.
PROMETHEUS_SIDE = """
from prometheus_client import CollectorRegistry, Counter, Histogram
from crank.runtime.task_metrics import TASK_METRICS

r = CollectorRegistry()
m = {
    s.name: Counter(s.name, s.help, s.labels, registry=r) if s.kind == "counter"
    else Histogram(s.name, s.help, s.labels, buckets=s.buckets, registry=r)
    for s in TASK_METRICS
}

def observe_task(capability, status, duration_s):
    m["crank_tasks"].labels(capability, status).inc()
    m["crank_task_duration_seconds"].labels(capability).observe(max(0.0, duration_s))
    if status == "retrying":
        m["crank_task_retries"].labels(capability).inc()
    elif status == "dead":
        m["crank_dead_lettered"].labels(capability).inc()

def observe_batch(capability, size, reason, waits):
    m["crank_batch_size"].labels(capability).observe(size)
    m["crank_batches"].labels(capability, reason).inc()
    for w in waits:
        m["crank_batch_wait_seconds"].labels(capability).observe(w)

def observe_llm_usage(capability, model, input_tokens, output_tokens, cost_usd):
    m["crank_llm_calls"].labels(capability, model).inc()
    m["crank_llm_tokens"].labels(capability, model, "input").inc(input_tokens)
    m["crank_llm_tokens"].labels(capability, model, "output").inc(output_tokens)
    m["crank_llm_cost_usd"].labels(capability, model).inc(cost_usd)
"""

CRANK_SIDE = """
import sys
from crank.runtime.task_metrics import observe_batch, observe_llm_usage, observe_task
"""

CHECK_SIDE = """
import json, sys
print(json.dumps(sorted(sys.modules)))
"""


def record(directory: Path, setup: str) -> list[str]:
    """Run ``setup`` then the observations in a fresh interpreter writing to ``directory``;
    the modules it had loaded at the end."""
    directory.mkdir()
    done = subprocess.run(
        [sys.executable, "-c", setup + OBSERVATIONS + CHECK_SIDE],
        env={"PROMETHEUS_MULTIPROC_DIR": str(directory), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    modules: list[str] = json.loads(done.stdout)
    return modules


def scrape(directory: Path) -> list[str]:
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(directory))  # type: ignore[no-untyped-call]
    return sorted(generate_latest(registry).decode().splitlines())


def test_the_files_scrape_as_prometheus_clients_own(tmp_path: Path) -> None:
    record(tmp_path / "prometheus", PROMETHEUS_SIDE)
    loaded = record(tmp_path / "crank", CRANK_SIDE)
    ours, theirs = scrape(tmp_path / "crank"), scrape(tmp_path / "prometheus")
    assert ours == theirs
    # and the scrape holds what was recorded (the comparison is not between two empties)
    assert 'crank_tasks_total{capability="a.one",status="succeeded"} 2.0' in ours
    assert 'crank_batch_wait_seconds_bucket{capability="a.one",le="+Inf"} 5.0' in ours
    assert (
        'crank_llm_tokens_total{capability="b.two",direction="input",model="gpt-x"} 120.0' in ours
    )
    helped = {line.split()[2] for line in ours if line.startswith("# HELP")}
    assert {s.name + ("_total" if s.kind == "counter" else "") for s in TASK_METRICS} <= helped
    # written without the package: neither it nor its HTTP exposition was imported
    assert not {"prometheus_client", "ssl", "http.server", "urllib.request"} & set(loaded)
