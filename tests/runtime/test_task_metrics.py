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

#: prometheus-client's own multiprocess mode (its Counter and Histogram, built from the
#: same declarations) under the same observe functions: only where they write differs.
PROMETHEUS_SIDE = """
from crank.runtime import task_metrics
from crank.runtime.task_metrics import observe_batch, observe_llm_usage, observe_task

task_metrics._sink = task_metrics.worker_metrics
"""

CRANK_SIDE = """
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
    assert "prometheus_client" in record(tmp_path / "prometheus", PROMETHEUS_SIDE)
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
