"""Slow tasks queued behind quick ones: do the worker processes share them?

    python benchmarks/mixed_claims.py [--quick 2000] [--slow 8] [--seconds 0.5] [--rounds 3]

Two worker processes (``python -m crank.runtime.worker_process``, the tests' fixture
worker, ``--batch-size 8`` as under ``crank run``) wait on an empty queue. Then
``--quick`` no-op tasks are queued, and behind them ``--slow`` tasks that each sleep
``--seconds``. The table gives, per backend, how long after the submit the last slow
task finished (median of ``--rounds``), against the best two processes can do (the
slow tasks split evenly: ``ceil(slow / 2) * seconds``) and the worst (one process runs
them all: ``slow * seconds``), and how many of the slow tasks were held at once (status
``running`` in two looks 20 ms apart: what a claim brings beyond its size goes back
within milliseconds); one per process is the ideal.

A process that sizes its claims by what it ran lately across capabilities claims a
full batch of the slow ones right after the quick ones and runs them one after
another while the other process idles.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, benchmarks/queue.py would shadow the standard library's ``queue``
# (which redis-py imports): take this folder off the import path first.
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    del sys.path[0]
    sys.path.append(str(Path(__file__).resolve().parent))

import argparse
import math
import os
import platform
import shutil
import statistics
import subprocess
import tempfile
import time

from machine_load import load_now
from process_groups import stop_groups
from recovery import FIXTURE_WORKERS, start_redis

from crank.runtime.brokers import open_broker
from crank.runtime.brokers.contract import Broker, TaskSpec

PROCESSES = 2
BATCH_SIZE = 8
#: a slow task counts as held when it shows running in two looks this far apart.
SETTLED_S = 0.02


def spawn_workers(url: str, logs: Path) -> list[subprocess.Popen[bytes]]:
    path = [str(FIXTURE_WORKERS), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
    procs = []
    for i in range(PROCESSES):
        with (logs / f"worker-{i}.log").open("ab") as log:
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "crank.runtime.worker_process", "--broker", url,
                     "--manifest", str(FIXTURE_WORKERS / "crank.yaml"),
                     "--consumer", f"mixed-{i}", "--batch-size", str(BATCH_SIZE),
                     "--block", "0.2"],
                    env=env, stdout=subprocess.DEVNULL, stderr=log, start_new_session=True,
                )
            )  # fmt: skip
    return procs


def warm(broker: Broker) -> None:
    """Until both processes serve: a few quick tasks, done."""
    ids = [r.id for r in broker.submit_many([TaskSpec("fixture.noop", {}) for _ in range(20)])]
    wait_done(broker, ids, 120)


def wait_done(broker: Broker, ids: list[str], limit_s: float) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if all((r := broker.get(i)) is not None and r.done for i in ids):
            return
        time.sleep(0.005)
    raise SystemExit(f"tasks not done within {limit_s:g} s")


def one_round(broker: Broker, quick: int, slow: int, seconds: float) -> tuple[float, int]:
    """Seconds from the submit to the last slow task's end; most slow ones held at once."""
    started = time.monotonic()
    for at in range(0, quick, 1000):
        broker.submit_many([TaskSpec("fixture.noop", {}) for _ in range(min(1000, quick - at))])
    slow_ids = [
        r.id
        for r in broker.submit_many(
            [TaskSpec("fixture.sleep", {"seconds": seconds}) for _ in range(slow)]
        )
    ]
    held = before = 0
    deadline = time.monotonic() + slow * seconds + 120
    while time.monotonic() < deadline:
        records = [broker.get(i) for i in slow_ids]
        if all(r is not None and r.done for r in records):
            return time.monotonic() - started, held
        running = sum(1 for r in records if r is not None and r.status == "running")
        # held across two looks SETTLED_S apart: a claim's extra tasks that go back
        # within milliseconds are not held
        held, before = max(held, min(before, running)), running
        time.sleep(SETTLED_S)
    raise SystemExit("the slow tasks did not finish")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", type=int, default=2000)
    parser.add_argument("--slow", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=0.5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backends", default="sqlite,redis")
    args = parser.parse_args()
    if shutil.which("redis-server") is None and "redis" in args.backends:
        raise SystemExit("redis-server is not on PATH (bash scripts/setup-system.sh)")
    best = math.ceil(args.slow / PROCESSES) * args.seconds
    worst = args.slow * args.seconds
    print(f"# {platform.node()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(f"# load average at the start: {load_now()}")
    print(
        f"# {args.quick} quick tasks, then {args.slow} of {args.seconds:g} s; "
        f"{PROCESSES} processes: best {best:g} s, one process alone {worst:g} s"
    )
    print("\n| backend | last slow task done, s (median) | rounds | most held at once |")
    print("|---|---:|---|---:|")
    with tempfile.TemporaryDirectory(prefix="crank-mixed-") as tmp:
        workdir = Path(tmp)
        for backend in args.backends.split(","):
            redis_proc = None
            if backend == "redis":
                redis_proc, url = start_redis(workdir)
            else:
                url = f"sqlite:///{workdir / 'mixed.db'}"
            broker = open_broker(url)
            procs = spawn_workers(url, workdir)
            try:
                warm(broker)
                rounds = [one_round(broker, args.quick, args.slow, args.seconds)]
                rounds += [
                    one_round(broker, args.quick, args.slow, args.seconds)
                    for _ in range(args.rounds - 1)
                ]
            finally:
                stop_groups(procs, grace_s=15)
                broker.close()
                if redis_proc is not None:
                    redis_proc.kill()
                    redis_proc.wait()
            times = [t for t, _ in rounds]
            shown = " / ".join(f"{t:.2f}" for t in times)
            held = max(h for _, h in rounds)
            print(f"| {backend} | {statistics.median(times):.2f} | {shown} | {held} |")
    print(f"# load average at the end: {load_now()}")


if __name__ == "__main__":
    main()
