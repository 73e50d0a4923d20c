"""The front door in front of a deep SQLite queue: does a backlog slow what is not in it?

    python benchmarks/deep_queue.py            # 0 and 200,000 tasks queued, 5 s per run

For each ``--depths`` value, a SQLite queue file is filled with that many tasks of a
capability no worker serves (``bulk.import``: a backlog waiting for workers that are
not running), then ``crank run`` serves the HTTP fixture worker from it with 2 worker
processes, and ``wrk`` (32 connections) measures the sync call and ``POST /v1/tasks``
of ``demo.echo`` as ``http_api.py`` does. A backlog should cost the calls next to it
nothing: a claim reads its own capability's tasks, and the pending count behind
``CRANK_MAX_PENDING`` is read beside the submits. (Before both, 200,000 queued tasks
took ``POST /v1/tasks`` from 6,300 req/s to 273.)

The load average is printed at the start and the end; when the machine is busy the
ratios are withheld (``machine_load.py``). Prints Markdown for ``RESULTS.md``.
"""

from __future__ import annotations

import sys
from pathlib import Path

# benchmarks/queue.py would shadow the standard library's ``queue``: this folder goes
# to the end of the import path, not the front.
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    sys.path.append(sys.path.pop(0))
sys.path.append(str(Path(__file__).resolve().parent))

import argparse
import platform
import shutil
import tempfile
import time

from http_api import bench_crank
from machine_load import load_now, verdict

from crank.runtime.brokers import open_broker
from crank.runtime.brokers.contract import TaskSpec

#: tasks per submit_many while filling (one transaction each).
FILL_CHUNK = 50_000


def fill(path: Path, depth: int) -> float:
    """Queue ``depth`` tasks of a capability no worker serves; seconds it took."""
    started = time.perf_counter()
    broker = open_broker(f"sqlite:///{path}")
    try:
        for done in range(0, depth, FILL_CHUNK):
            count = min(FILL_CHUNK, depth - done)
            broker.submit_many([TaskSpec("bulk.import", {"row": done + i}) for i in range(count)])
        pending = sum(broker.stats().pending.values())
    finally:
        broker.close()
    if pending != depth:
        raise RuntimeError(f"filled {pending} tasks, not {depth}")
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per wrk run")
    parser.add_argument(
        "--depths",
        type=lambda text: [int(n) for n in text.split(",")],
        default=[0, 200_000],
        help="backlogs to measure in front of, comma-separated (default 0,200000)",
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("error: wrk is not installed\n  hint: apt-get install -y wrk", file=sys.stderr)
        return 2
    before = load_now()
    rows: dict[int, dict[str, object]] = {}
    with tempfile.TemporaryDirectory(prefix="crank-bench-deep-") as tmp:
        workdir = Path(tmp)
        for depth in args.depths:
            path = workdir / f"deep-{depth}.db"
            filled = fill(path, depth)
            runs = bench_crank(f"sqlite:///{path}", workdir, args.seconds)
            rows[depth] = {"filled_s": filled, **runs}
    after = load_now()

    python = f"{platform.python_implementation()} {platform.python_version()}"
    print(f"## A deep SQLite queue ({python}, load {before} at the start, "
          f"{after} at the end)\n")  # fmt: skip
    print("| tasks of another capability queued | call | req/s at 32 | p50 / p99 ms | errors |")
    print("|---:|---|---:|---:|---:|")
    for depth, runs in rows.items():
        for name in ("sync call", "POST /v1/tasks"):
            run = runs[name][32]  # type: ignore[index]
            print(f"| {depth:,} | {name} | {run.rps:,.0f} | {run.p50_ms:.2f} / {run.p99_ms:.2f} "
                  f"| {run.errors} |")  # fmt: skip
    busy = verdict(before, after)
    if busy is not None:
        print(f"\n{busy}")
        return 0
    base = rows.get(0)
    if base is None:
        return 0
    print()
    for depth, runs in rows.items():
        if depth == 0:
            continue
        for name in ("sync call", "POST /v1/tasks"):
            share = runs[name][32].rps / base[name][32].rps  # type: ignore[index]
            print(f"- {depth:,} queued, {name}: {100 * share:.0f} % of the rate with none queued")
    return 0


if __name__ == "__main__":
    sys.exit(main())
