"""What ``max_concurrency`` costs: a slot per task in the worker, a check per HTTP call.

    python benchmarks/concurrency.py [--tasks 20000] [--rounds 5]

* slot µs/task: ``ConcurrencySlots.try_acquire`` + ``Slot.release`` (two ``flock``
  calls on a kept descriptor), what a worker process adds to each task of a
  limited capability;
* admit µs/call: ``CallAdmission.admit`` + ``release`` with the slots counted
  (one ``flock`` try per slot of the capability), what the HTTP server adds to
  each synchronous or streaming call of a limited capability, for limits 2 and 32;
* loop tasks/s: a real :class:`~crank.runtime.worker_process.WorkerLoop` draining
  ``--tasks`` no-op tasks from the in-process broker, the capability unlimited and
  then with ``max_concurrency: 4``; the best of ``--rounds``.

Numbers are best-of-rounds (the least disturbed run) and the load average is
printed with them; on a busy machine the ratio is withheld.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine_load import load_now, verdict

from crank.runtime.brokers import open_broker
from crank.runtime.brokers.contract import TaskSpec
from crank.runtime.concurrency import CallAdmission, ConcurrencySlots
from crank.runtime.worker_process import WorkerLoop, WorkerProcessConfig

MANIFEST = Path(__file__).resolve().parent / "queue_workers" / "crank.yaml"


def best_us(operation: object, count: int, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(count):
            operation()  # type: ignore[operator]
        best = min(best, (time.perf_counter() - started) / count)
    return best * 1e6


def slot_cost(directory: Path, count: int, rounds: int) -> float:
    slots = ConcurrencySlots(directory, {"bench.noop": 4})

    def one() -> None:
        slot = slots.try_acquire("bench.noop")
        assert slot is not None
        slot.release()

    try:
        return best_us(one, count, rounds)
    finally:
        slots.close()


def admit_cost(directory: Path, limit: int, count: int, rounds: int) -> float:
    slots = ConcurrencySlots(directory / f"admit-{limit}", {"bench.noop": limit})
    gate = CallAdmission({"bench.noop": limit}, slots)

    def one() -> None:
        gate.admit("bench.noop").release()

    try:
        return best_us(one, count, rounds)
    finally:
        slots.close()


def drain_rate(tasks: int, slots: ConcurrencySlots | None) -> float:
    broker = open_broker("memory://")
    config = WorkerProcessConfig(
        broker_url="memory://", manifest_paths=(str(MANIFEST),), block_s=0.01, grace_s=30
    )
    loop = WorkerLoop(config, broker=broker, slots=slots)
    broker.submit_many([TaskSpec("bench.noop", {}) for _ in range(tasks)])
    runner = threading.Thread(target=loop.run)
    started = time.perf_counter()
    runner.start()
    while loop.processed < tasks:
        time.sleep(0.001)
    took = time.perf_counter() - started
    loop.request_stop()
    runner.join(timeout=60)
    broker.close()
    return tasks / took


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    sys.path.insert(0, str(MANIFEST.parent))  # the no-op worker module
    before = load_now()
    with tempfile.TemporaryDirectory(prefix="crank-bench-slots-") as tmp:
        directory = Path(tmp)
        import bench_counter  # the no-op task counts itself in this file

        os.environ["BENCH_COUNTER_FILE"] = str(directory / "counter")
        bench_counter.create(os.environ["BENCH_COUNTER_FILE"])
        slot_us = slot_cost(directory, args.tasks, args.rounds)
        admit_us = {n: admit_cost(directory, n, args.tasks, args.rounds) for n in (2, 32)}
        free = max(drain_rate(args.tasks, None) for _ in range(args.rounds))
        limited = max(
            drain_rate(args.tasks, ConcurrencySlots(directory / "loop", {"bench.noop": 4}))
            for _ in range(args.rounds)
        )
    after = load_now()
    print(f"interpreter: {sys.executable}")
    print(f"load: {before} at the start, {after} at the end")
    print(f"slot acquire+release: {slot_us:.2f} µs/task")
    for limit, cost in admit_us.items():
        print(f"admission (limit {limit}): {cost:.2f} µs/call")
    print(f"worker loop, unlimited: {free:,.0f} tasks/s")
    print(f"worker loop, max_concurrency 4: {limited:,.0f} tasks/s")
    why = verdict(before, after)
    if why is not None:
        print(why)
    else:
        print(f"limited/unlimited: {limited / free:.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
