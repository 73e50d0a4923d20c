"""crank run's worker processes share slow tasks that come after quick ones.

A process sizes its claims by how long its recent tasks ran. When that was learned
from every capability at once, a process that had run quick tasks claimed a batch of
slow ones at once (shown running) and ran them one after another, while the other
process idled. Claim sizes are now per capability (one never run yet: 1), and what a
claim brings beyond them goes back to the queue at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from crank.client import connect

from ..conftest import FIXTURE_WORKERS

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_slow_tasks_after_quick_ones_run_in_both_worker_processes(
    crank_run: Any, tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    args = ["--min-workers", "2", "--max-workers", "2"]
    if backend == "redis":
        args += ["--broker", request.getfixturevalue("redis_server")]
    run = crank_run(*args, workers=(FIXTURE_WORKERS,))
    run.wait_until(lambda: len(run.workers()) == 2, what="two worker processes")
    with connect(run.broker_url) as queue:
        # both processes learn that fixture.noop is quick: claims of 8 (the batch size)
        quick = queue.submit_many([("fixture.noop", {}) for _ in range(200)])
        for task in quick:
            task.result(timeout=120)
        # then four slow tasks, queued at once: they run until the gate opens, and each
        # says when it started
        gate = tmp_path / "gate"
        marks = [tmp_path / f"started-{i}" for i in range(4)]
        slow = queue.submit_many(
            [("fixture.wait_for_file", {"path": str(gate), "started": str(m)}) for m in marks]
        )
        try:
            # one in each process while the gate is shut; the first claim took all four
            run.wait_until(
                lambda: sum(m.exists() for m in marks) >= 2,
                timeout_s=120,
                what="two slow tasks running at once",
            )
            statuses = sorted(task.status().status for task in slow)
            assert statuses == ["pending", "pending", "running", "running"]
        finally:
            gate.touch()
        for task in slow:
            assert task.result(timeout=120) == {"waited_for": str(gate)}
    assert run.terminate() == 0
