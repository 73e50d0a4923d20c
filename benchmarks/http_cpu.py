"""CPU time per request of ``crank run``'s server process, its workers and wrk itself.

Wall-clock rates on a shared machine measure the machine; CPU time per request
(from /proc for the server and its worker processes, from ``getrusage`` for wrk)
moves much less with the load, so it is what a before/after of the server's hot
path compares. ``crank run`` on SQLite or a private redis-server, 2 worker
processes, the echo contract of ``benchmarks/http_api.py``, wrk (1 thread) at 32
connections, sync calls then ``POST /v1/tasks``.

To compare two versions run it twice on the same machine, back to back, e.g. with
the older source tree first on ``PYTHONPATH`` (the worker processes inherit it):

    python benchmarks/http_cpu.py --broker sqlite --seconds 10 --rounds 2
    PYTHONPATH=/path/to/old/src python benchmarks/http_cpu.py --broker sqlite
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import resource
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from http_api import (
    CRANK_MAIN,
    ECHO_BODY,
    ECHO_PATH,
    SUBMIT_BODY,
    WORKERS,
    children,
    cpu_seconds,
    free_port,
    redis_server,
    wait_until_up,
)
from machine_load import load_now

import crank


def wrk(url: str, body: str, seconds: int, workdir: Path) -> tuple[int, int, float]:
    """(requests, non-2xx answers, wrk's own CPU seconds) of one wrk run at 32 connections."""
    script = workdir / "post.lua"
    script.write_text(
        f"wrk.method = \"POST\"\nwrk.body = '{body}'\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
    )
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(
        ["wrk", "-t1", "-c32", f"-d{seconds}s", "-s", str(script), url],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    used = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return requests, int(bad.group(1)) if bad else 0, used


def measure(broker_url: str, workdir: Path, seconds: int, rounds: int) -> None:
    port = free_port()
    env = {**os.environ, "CRANK_MAX_INFLIGHT": "256", "CRANK_MAX_PENDING": "10000000"}
    argv = [sys.executable, "-c", CRANK_MAIN, "run", "--port", str(port),
            "--worker", str(WORKERS), "--broker", broker_url,
            "--min-workers", "2", "--max-workers", "2"]  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    # the access log goes to a file, as it would in production (not to a terminal)
    with (workdir / "server.log").open("wb") as log:
        proc = subprocess.Popen(argv, cwd=workdir, env=env, stdout=log, stderr=log)
    try:
        wait_until_up(f"{base}/health", proc)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # both workers up
            with contextlib.suppress(OSError), urllib.request.urlopen(f"{base}/ready") as r:
                if r.status == 200:
                    break
            time.sleep(0.2)
        for name, path, body in (("sync call", ECHO_PATH, ECHO_BODY),
                                 ("POST /v1/tasks", "/v1/tasks", SUBMIT_BODY)):  # fmt: skip
            wrk(base + path, body, 2, workdir)  # warm up
            for _ in range(rounds):
                kids = children(proc.pid)
                server0, kids0 = cpu_seconds(proc.pid), sum(map(cpu_seconds, kids))
                load = load_now()
                requests, bad, wrk_cpu = wrk(base + path, body, seconds, workdir)
                server = 1000 * (cpu_seconds(proc.pid) - server0) / requests
                workers = 1000 * (sum(map(cpu_seconds, kids)) - kids0) / requests
                print(
                    f"| {broker_url.split(':')[0]} | {name} | {requests:,} | {server:.3f} | "
                    f"{workers:.3f} | {1000 * wrk_cpu / requests:.3f} | {bad} | {load} |",
                    flush=True,
                )
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker", choices=("sqlite", "redis", "both"), default="both")
    parser.add_argument("--seconds", type=int, default=10, help="per wrk run")
    parser.add_argument("--rounds", type=int, default=2, help="wrk runs per request kind")
    args = parser.parse_args()
    print(f"crank from {Path(crank.__file__).parent}, python {sys.version.split()[0]}")
    print("| broker | request | requests | server CPU ms/req | workers CPU ms/req "
          "| wrk CPU ms/req | non-2xx | load |")  # fmt: skip
    print("|---|---|---:|---:|---:|---:|---:|---|")
    with tempfile.TemporaryDirectory(prefix="crank-http-cpu-") as tmp:
        workdir = Path(tmp)
        if args.broker in ("sqlite", "both"):
            measure(f"sqlite:///{workdir / 'queue.db'}", workdir, args.seconds, args.rounds)
        if args.broker in ("redis", "both"):
            with redis_server(workdir) as url:
                measure(url, workdir, args.seconds, args.rounds)


if __name__ == "__main__":
    main()
