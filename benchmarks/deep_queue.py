"""The front door in front of a deep SQLite queue: does a backlog slow what is not in it?

    python benchmarks/deep_queue.py            # 0 and 200,000 tasks queued, 5 s per run

For each ``--depths`` value and each kind of backlog, a SQLite queue file is filled
with that many tasks, then ``crank run`` serves the HTTP fixture worker from it with 2
worker processes, and ``wrk`` (32 connections) measures the sync call and ``POST
/v1/tasks`` of ``demo.echo`` as ``http_api.py`` does. The backlogs (``--kinds``):

* ``other``: tasks of a capability no worker serves (``bulk.import``: a backlog
  waiting for workers that are not running);
* ``retrying``: tasks of ``demo.echo`` itself that failed once and wait out a long
  retry backoff (a downstream outage).

A backlog should cost the calls next to it nothing: a claim reads only tasks it could
take, and the pending count behind ``CRANK_MAX_PENDING`` is read beside the submits.
(Before, 200,000 queued tasks of another capability took ``POST /v1/tasks`` from 6,300
req/s to 273.)

It also times the queue's ``stats()`` (the counts behind ``/v1/status``, ``/metrics``,
the autoscaler and the pending bound) in front of each backlog: the median of 9
reads, after one that opens the reading connection.

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
import statistics
import tempfile
import time

from http_api import bench_crank
from machine_load import load_now, verdict

from crank.runtime.brokers import open_broker
from crank.runtime.brokers.contract import ClaimOptions, TaskSpec

#: tasks per submit_many while filling (one transaction each).
FILL_CHUNK = 50_000
KINDS = ("other", "retrying")


def fill(path: Path, depth: int, kind: str) -> float:
    """Queue a backlog of ``depth`` tasks of ``kind`` (see the module docstring);
    seconds it took."""
    started = time.perf_counter()
    # a backoff of an hour: the backlog waits while the benchmark runs
    broker = open_broker(f"sqlite:///{path}?retry_base_s=3600&retry_max_s=3600")
    capability = "bulk.import" if kind == "other" else "demo.echo"
    try:
        for done in range(0, depth, FILL_CHUNK):
            count = min(FILL_CHUNK, depth - done)
            broker.submit_many([TaskSpec(capability, {"row": done + i}) for i in range(count)])
            if kind == "retrying":
                options = ClaimOptions("filler", capabilities=(capability,), limit=count)
                for claim in broker.claim(options):
                    error = {"code": "DOWN", "message": "the service it calls is down"}
                    broker.fail(claim, error, retryable=True)
        pending = sum(broker.stats().pending.values())
    finally:
        broker.close()
    if pending != depth:
        raise RuntimeError(f"filled {pending} tasks, not {depth}")
    return time.perf_counter() - started


def stats_ms(path: Path) -> float:
    """The median ``stats()`` read of the queue file at ``path``, in milliseconds."""
    broker = open_broker(f"sqlite:///{path}")
    try:
        broker.stats()
        times = []
        for _ in range(9):
            started = time.perf_counter()
            broker.stats()
            times.append(time.perf_counter() - started)
    finally:
        broker.close()
    return 1000 * statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per wrk run")
    parser.add_argument(
        "--depths",
        type=lambda text: [int(n) for n in text.split(",")],
        default=[0, 200_000],
        help="backlogs to measure in front of, comma-separated (default 0,200000)",
    )
    parser.add_argument(
        "--kinds",
        type=lambda text: text.split(","),
        default=list(KINDS),
        help="kinds of backlog, comma-separated: other (tasks of a capability no worker "
        "serves), retrying (the served capability's, waiting out a retry backoff); "
        "default other,retrying",
    )
    args = parser.parse_args()
    unknown = sorted(set(args.kinds) - set(KINDS))
    if unknown:
        print(f"error: --kinds: unknown kind {unknown[0]!r}\n  hint: one of {', '.join(KINDS)}",
              file=sys.stderr)  # fmt: skip
        return 2
    if shutil.which("wrk") is None:
        print("error: wrk is not installed\n  hint: apt-get install -y wrk", file=sys.stderr)
        return 2
    before = load_now()
    rows: dict[tuple[str, int], dict[str, object]] = {}
    cases = [("-", 0)] if 0 in args.depths else []
    cases += [(kind, depth) for kind in args.kinds for depth in args.depths if depth]
    with tempfile.TemporaryDirectory(prefix="crank-bench-deep-") as tmp:
        workdir = Path(tmp)
        for kind, depth in cases:
            path = workdir / f"deep-{kind}-{depth}.db"
            filled = fill(path, depth, kind)
            read_ms = stats_ms(path)
            runs = bench_crank(f"sqlite:///{path}", workdir, args.seconds)
            rows[kind, depth] = {"filled_s": filled, "stats_ms": read_ms, **runs}
    after = load_now()

    python = f"{platform.python_implementation()} {platform.python_version()}"
    print(f"## A deep SQLite queue ({python}, load {before} at the start, "
          f"{after} at the end)\n")  # fmt: skip
    print("| backlog | tasks | call | req/s at 32 | p50 / p99 ms | errors |")
    print("|---|---:|---|---:|---:|---:|")
    for (kind, depth), runs in rows.items():
        for name in ("sync call", "POST /v1/tasks"):
            run = runs[name][32]  # type: ignore[index]
            print(f"| {kind} | {depth:,} | {name} | {run.rps:,.0f} | "
                  f"{run.p50_ms:.2f} / {run.p99_ms:.2f} | {run.errors} |")  # fmt: skip
    print("\n| backlog | tasks | stats() median ms |")
    print("|---|---:|---:|")
    for (kind, depth), row in rows.items():
        print(f"| {kind} | {depth:,} | {row['stats_ms']:.1f} |")
    busy = verdict(before, after)
    if busy is not None:
        print(f"\n{busy}")
        return 0
    base = rows.get(("-", 0))
    if base is None:
        return 0
    print()
    for (kind, depth), runs in rows.items():
        if depth == 0:
            continue
        for name in ("sync call", "POST /v1/tasks"):
            share = runs[name][32].rps / base[name][32].rps  # type: ignore[index]
            print(f"- {depth:,} {kind}, {name}: {100 * share:.0f} % of the rate with none queued")
    return 0


if __name__ == "__main__":
    sys.exit(main())
