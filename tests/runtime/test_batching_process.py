"""The batching worker loop as a real process (``python -m crank.runtime.batching_loop``)
against a SQLite broker: what it gives back on SIGTERM, and the plain loop's refusal."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from crank.runtime.brokers import open_broker
from crank.runtime.brokers.contract import ClaimOptions, TaskSpec

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from crank.runtime.brokers.contract import Broker, Claim

BATCHING = Path(__file__).resolve().parents[1] / "fixtures" / "batching_workers"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    gate = tmp_path / "gate"
    gate.mkdir()
    (gate / "open").touch()
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(BATCHING), os.environ.get("PYTHONPATH", "")]),
        "CRANK_FIXTURE_GATE_DIR": str(gate),
    }


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    opened = open_broker(f"sqlite:///{tmp_path / 'queue.db'}")
    yield opened
    opened.close()


def argv(module: str, broker: Broker) -> list[str]:
    return [
        sys.executable, "-m", module, "--broker", broker.url,
        "--manifest", str(BATCHING / "crank.yaml"), "--consumer", "w1", "--block", "0.1",
    ]  # fmt: skip


def test_the_plain_worker_loop_refuses_manifests_with_batching(
    broker: Broker, env: dict[str, str]
) -> None:
    done = subprocess.run(
        argv("crank.runtime.worker_process", broker),
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "declare batching or concurrency" in done.stderr
    assert "python -m crank.runtime.batching_loop" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_sigterm_gives_back_the_tasks_waiting_for_their_batch(
    broker: Broker, env: dict[str, str], tmp_path: Path
) -> None:
    log = (tmp_path / "worker.log").open("wb")
    proc = subprocess.Popen(argv("crank.runtime.batching_loop", broker), env=env, stderr=log)
    try:
        # three of a batch of four, with a minute of max_latency_ms: they wait
        ids = [
            r.id
            for r in broker.submit_many([TaskSpec("batching.gated", {"n": n}) for n in range(3)])
        ]
        deadline = time.monotonic() + 120
        while not all((r := broker.get(i)) is not None and r.status == "running" for i in ids):
            assert proc.poll() is None, (tmp_path / "worker.log").read_text()
            assert time.monotonic() < deadline, "the tasks were never claimed"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    # given back unrun: queued again at once, not after the visibility timeout
    records = [broker.get(i) for i in ids]
    assert [r.status if r else None for r in records] == ["pending"] * 3


@pytest.mark.slow
def test_a_task_waiting_behind_a_hung_batch_goes_to_another_process_after_its_deadline(
    broker: Broker, env: dict[str, str], tmp_path: Path
) -> None:
    gate = Path(env["CRANK_FIXTURE_GATE_DIR"])
    (gate / "open").unlink()  # batching.gated holds the process's main thread until then
    log = (tmp_path / "worker.log").open("wb")
    fast_lease = ["--visibility-timeout", "1", "--heartbeat", "0.2"]
    proc = subprocess.Popen(
        argv("crank.runtime.batching_loop", broker) + fast_lease, env=env, stderr=log
    )
    thief = ClaimOptions("thief", ("batching.deadline",), visibility_timeout_s=60)
    try:

        def wait_for(what: str, done: Callable[[], bool]) -> None:
            deadline = time.monotonic() + 120
            while not done():
                assert proc.poll() is None, (tmp_path / "worker.log").read_text()
                assert time.monotonic() < deadline, f"timed out waiting for {what}"
                time.sleep(0.05)

        # claimed, it waits for its batch (a minute of max_latency_ms, a 5 s timeout) ...
        waiting = broker.submit(TaskSpec("batching.deadline", {"n": 1}))
        wait_for("its claim", lambda: getattr(broker.get(waiting.id), "status", None) == "running")
        # ... while a full batch of batching.gated hangs the main thread that would run it
        broker.submit_many([TaskSpec("batching.gated", {"n": n}) for n in range(4)])
        wait_for("the hung batch", lambda: any(gate.glob("batch-*.json")))
        # held no longer than its deadline: another process gets it
        taken: list[Claim] = []
        wait_for("its redelivery", lambda: bool(taken.extend(broker.claim(thief)) or taken))
        assert [(c.task.id, c.attempt) for c in taken] == [(waiting.id, 2)]
    finally:
        (gate / "open").touch()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            log.close()
