"""The HTTP API of ``crank run`` end to end: latency of synchronous calls, submit rate, drain.

Starts ``crank run`` (2 worker processes) on the SQLite broker and, with
``--redis``, on a private redis-server, then measures with a real HTTP client:

* ``sync p50/p99``: ``POST /v1/capabilities/demo.echo`` one after another
  (submit, worker runs it, result polled back);
* ``submit/s``: ``POST /v1/tasks`` from 32 concurrent connections;
* ``drain s``: time from the last accepted submit until the queue is empty;
* ``CPU ms/req``: CPU time of the crank process (server + supervisor) per
  submit request, from /proc, which is less disturbed by other load than wall time.

Prints a Markdown table. Run: ``python benchmarks/http_api.py [--redis] [--calls N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WORKERS = REPO / "tests" / "fixtures" / "http_workers"
CRANK_MAIN = "import sys; from crank.cli import main; sys.exit(main())"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def submit_burst(url: str, total: int, concurrency: int) -> float:
    import httpx

    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        sem = asyncio.Semaphore(concurrency)

        async def one(i: int) -> None:
            async with sem:
                r = await client.post(
                    "/v1/tasks", json={"capability": "demo.echo", "input": {"text": str(i)}}
                )
                r.raise_for_status()

        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(total)))
        return time.perf_counter() - started


def measure(broker: str, workdir: Path, calls: int, tasks: int) -> dict[str, float]:
    import httpx

    port = free_port()
    env = {**os.environ, "CRANK_MAX_INFLIGHT": "256", "CRANK_MAX_PENDING": "1000000"}
    argv = [sys.executable, "-c", CRANK_MAIN, "run", "--port", str(port), "--worker", str(WORKERS),
            "--broker", broker, "--min-workers", "2", "--max-workers", "2"]  # fmt: skip
    proc = subprocess.Popen(
        argv, cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=url, timeout=60) as http:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    if http.get("/ready").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
            for _ in range(20):  # warm up: workers import, SQLite pages cached
                http.post("/v1/capabilities/demo.echo", json={"text": "warm"})
            latencies = []
            for _ in range(calls):
                started = time.perf_counter()
                r = http.post("/v1/capabilities/demo.echo", json={"text": "x"})
                latencies.append(time.perf_counter() - started)
                r.raise_for_status()
            latencies.sort()
            cpu_before = cpu_seconds(proc.pid)
            elapsed = asyncio.run(submit_burst(url, tasks, 32))
            cpu_per_req = (cpu_seconds(proc.pid) - cpu_before) / tasks
            started = time.perf_counter()
            while http.get("/v1/status").json()["queue_health"]["total_pending_tasks"] > 0:
                time.sleep(0.02)
            drain = time.perf_counter() - started
        return {
            "p50_ms": 1000 * latencies[len(latencies) // 2],
            "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
            "submit_per_s": tasks / elapsed,
            "drain_s": drain,
            "cpu_ms": 1000 * cpu_per_req,
        }
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)


def main() -> int:
    # This folder holds queue.py, which would shadow the standard library's queue module
    # (imported by httpx's async machinery).
    here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--redis", action="store_true", help="also measure on a private redis-server"
    )
    parser.add_argument("--calls", type=int, default=300, help="synchronous calls to time")
    parser.add_argument("--tasks", type=int, default=2000, help="tasks submitted in the burst")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="crank-http-bench-") as tmp:
        workdir = Path(tmp)
        rows.append(
            ("sqlite", measure(f"sqlite:///{workdir / 'q.db'}", workdir, args.calls, args.tasks))
        )
        if args.redis and shutil.which("redis-server"):
            port = free_port()
            redis = subprocess.Popen(
                [
                    "redis-server",
                    "--port",
                    str(port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ],
                stdout=subprocess.DEVNULL,
            )
            try:
                time.sleep(0.5)
                rows.append(
                    (
                        "redis",
                        measure(f"redis://127.0.0.1:{port}/0", workdir, args.calls, args.tasks),
                    )
                )
            finally:
                redis.terminate()
                redis.wait(timeout=30)
    print("| broker | sync p50 ms | sync p99 ms | submit/s (32 conns) | drain s | CPU ms/submit |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, m in rows:
        print(f"| {name} | {m['p50_ms']:.1f} | {m['p99_ms']:.1f} | {m['submit_per_s']:.0f} | "
              f"{m['drain_s']:.2f} | {m['cpu_ms']:.2f} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
