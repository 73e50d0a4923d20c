"""Streaming events through the broker: what publishing costs, how soon a reader sees one.

    python benchmarks/sse_events.py [--events 2000] [--latency-events 300]

For each backend (memory, SQLite in a temp dir, Redis on a private redis-server
started here on a free loopback port, no persistence):

* publish µs/event: ``publish_events(task, [event])`` one event per call (what a
  worker process does for each event a streaming handler yields);
* read µs/event: ``read_events(task, after)`` paging through them (100 per call);
* latency p50/p99: a reader on its own connection tails the task with
  ``read_events(..., block_s=1)`` while a writer publishes one event every 2 ms,
  each stamped with ``time.perf_counter()``; latency = when the reader got it minus
  the stamp (same process, so the same clock).

The HTTP server does not block in ``read_events``: it looks every 5 ms to 50 ms
from the event loop (``crank.runtime.http.sse``), which adds up to that pause.
"""

from __future__ import annotations

import sys
from pathlib import Path

# This folder holds a ``queue.py`` that would shadow the standard library's
# ``queue`` (which redis-py imports): take the folder off the import path first.
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    del sys.path[0]

import argparse
import shutil
import socket
import statistics
import subprocess
import tempfile
import threading
import time

from crank.runtime.brokers import open_broker


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_redis() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            open_broker(url).close()
            return proc, url
        except Exception:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("redis-server did not start")


def measure(url: str, events: int, latency_events: int) -> dict[str, float]:
    writer = open_broker(url)
    reader = writer if url.startswith("memory") else open_broker(url)
    try:
        started = time.perf_counter()
        for i in range(events):
            writer.publish_events("bench-publish", [{"i": i, "text": "token"}])
        publish_us = (time.perf_counter() - started) / events * 1e6
        started = time.perf_counter()
        after, read = 0, 0
        while read < events:
            got = reader.read_events("bench-publish", after, limit=100)
            read += len(got)
            after = got[-1][0]
        read_us = (time.perf_counter() - started) / events * 1e6

        latencies: list[float] = []

        def tail() -> None:
            after = 0
            while len(latencies) < latency_events:
                for seq, event in reader.read_events("bench-latency", after, block_s=1.0):
                    latencies.append(time.perf_counter() - float(event["t"]))
                    after = seq

        thread = threading.Thread(target=tail)
        thread.start()
        time.sleep(0.05)
        for _ in range(latency_events):
            writer.publish_events("bench-latency", [{"t": time.perf_counter()}])
            time.sleep(0.002)
        thread.join(timeout=60)
        cuts = statistics.quantiles(latencies, n=100)
        return {
            "publish_us": publish_us,
            "read_us": read_us,
            "p50_ms": statistics.median(latencies) * 1e3,
            "p99_ms": cuts[98] * 1e3,
        }
    finally:
        if reader is not writer:
            reader.close()
        writer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--latency-events", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        urls = {"memory": "memory://", "sqlite": f"sqlite:///{Path(tmp) / 'q.db'}"}
        redis_proc = None
        if shutil.which("redis-server"):
            redis_proc, urls["redis"] = start_redis()
        try:
            print("| backend | publish µs/event | read µs/event | latency p50 ms | p99 ms |")
            print("|---|---:|---:|---:|---:|")
            for name, url in urls.items():
                r = measure(url, args.events, args.latency_events)
                print(
                    f"| {name} | {r['publish_us']:.0f} | {r['read_us']:.1f} | "
                    f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} |"
                )
        finally:
            if redis_proc is not None:
                redis_proc.terminate()
                redis_proc.wait(timeout=10)


if __name__ == "__main__":
    main()
