"""The Python client's round trip against Celery's ``delay().get()``, on one Redis.

    pip install -e ".[bench]"
    python benchmarks/client.py [--samples 500] [--rounds 3]

One private redis-server (free loopback port, no persistence) serves everybody.
Each system gets two worker processes, idle and waiting, and this process sends
one echo task (``{"text": "hello world"}``) at a time and waits for its result,
``--samples`` times after a warm-up, ``--rounds`` rounds taking turns:

* crank connect: ``crank.connect(redis_url).submit(...).result()``, straight to
  the broker (the goal: p50 <= half of Celery's);
* crank connect_async: the same with ``connect_async`` on an event loop;
* crank Client, HTTP: ``crank.Client.call(...)`` against ``crank run --broker
  redis://...`` (the HTTP server in between);
* celery: ``echo.delay(text).get()``, Celery's defaults with Redis as broker and
  result backend, workers ``-P solo`` (no pool, the fastest setting for this).

The load average is printed at the start and the end; on a busy machine the ratio
to the goal is withheld (see ``machine_load.py``).
"""

from __future__ import annotations

import sys
from pathlib import Path

# benchmarks/queue.py would shadow the standard library's ``queue`` (redis-py imports
# it): this folder goes to the end of the import path, not the front.
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    sys.path.append(sys.path.pop(0))

import argparse
import asyncio
import os
import platform
import socket
import statistics
import subprocess
import tempfile
import time
from typing import TYPE_CHECKING, Any

from machine_load import load_now, verdict
from process_groups import stop_trees

if TYPE_CHECKING:
    from collections.abc import Callable

HERE = Path(__file__).resolve().parent
WORKERS = HERE / "client_workers"
PAYLOAD = {"text": "hello world"}
WORKER_PROCESSES = 2


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(check: Callable[[], bool], what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception as exc:  # not up yet
            last = exc
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not come up within {timeout_s:g} s (last: {last!r})")


def start(argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        argv,
        env=env,
        cwd=WORKERS,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group, ended whole in stop()
    )


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    """End every process started here and everything they started, whole process groups.

    ``crank run`` starts its workers in process groups of their own: they are found
    before anything is signalled and their groups are ended too, so nothing started
    here outlives the benchmark, whichever step failed.
    """
    stop_trees(procs, grace_s=15)


def percentiles(samples_s: list[float]) -> tuple[float, float]:
    ordered = sorted(samples_s)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return statistics.median(ordered) * 1000, p99 * 1000


def timed(one: Callable[[], object], samples: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        one()
    out = []
    for _ in range(samples):
        started = time.perf_counter()
        one()
        out.append(time.perf_counter() - started)
    return out


class Systems:
    """The four round trips, their worker processes started once."""

    def __init__(
        self, redis_url: str, env: dict[str, str], procs: list[subprocess.Popen[bytes]]
    ) -> None:
        """Starts the processes (into ``procs``, which the caller stops whatever
        happens) and opens the clients (closed here if a later step fails)."""
        import crank

        self.procs = procs
        self.queue: crank.client.BrokerClient | None = None
        self.client: crank.Client | None = None
        self.loop = asyncio.new_event_loop()
        self.async_queue: crank.client.AsyncBrokerClient | None = None
        try:
            self._start(crank, redis_url, env)
        except BaseException:
            self.close()
            raise

    def _start(self, crank: Any, redis_url: str, env: dict[str, str]) -> None:
        crank_workers = [
            [sys.executable, "-m", "crank.runtime.worker_process", "--broker", redis_url,
             "--manifest", str(WORKERS / "crank.yaml"), "--consumer", f"bench-{i}"]
            for i in range(WORKER_PROCESSES)
        ]  # fmt: skip
        celery_workers = [
            [sys.executable, "-m", "celery", "-A", "bench_celery_echo", "worker", "-P", "solo",
             "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "WARNING",
             "-n", f"bench{i}@localhost"]
            for i in range(WORKER_PROCESSES)
        ]  # fmt: skip
        # crank run on another Redis database, so its pool does not take the tasks above
        http_port = free_port()
        http_broker = redis_url.rsplit("/", 1)[0] + "/1"
        server = [
            sys.executable, "-m", "crank", "run", "--broker", http_broker,
            "--port", str(http_port), "--worker", str(WORKERS),
            "--min-workers", str(WORKER_PROCESSES), "--max-workers", str(WORKER_PROCESSES),
        ]  # fmt: skip
        for argv in [*crank_workers, *celery_workers, server]:
            self.procs.append(start(argv, env))

        self.queue = crank.connect(redis_url)
        self.client = client = crank.Client(f"http://127.0.0.1:{http_port}")
        self.async_queue = self.loop.run_until_complete(crank.connect_async(redis_url))
        sys.path.insert(0, str(WORKERS))
        import bench_celery_echo

        self.celery_echo = bench_celery_echo.echo
        wait_for(lambda: client._http.get("/ready").status_code == 200, "crank run")
        # every worker answers before anything is timed
        for name, one in self.cases().items():
            wait_for(lambda one=one: one() is None, f"a first round trip of {name}")  # type: ignore[misc]

    def cases(self) -> dict[str, Callable[[], None]]:
        queue, async_queue, client = self.queue, self.async_queue, self.client
        assert queue is not None and async_queue is not None and client is not None

        def crank_connect() -> None:
            queue.submit("bench.echo", PAYLOAD).result(timeout=10)

        async def async_round_trip() -> None:
            task = await async_queue.submit("bench.echo", PAYLOAD)
            await task.result(timeout=10)

        def crank_connect_async() -> None:
            self.loop.run_until_complete(async_round_trip())

        def crank_http() -> None:
            client.call("bench.echo", PAYLOAD)

        def celery() -> None:
            self.celery_echo.delay(PAYLOAD["text"]).get(timeout=10)

        return {
            "crank connect (sync)": crank_connect,
            "crank connect_async": crank_connect_async,
            "crank Client, HTTP (crank run, Redis)": crank_http,
            "celery delay().get()": celery,
        }

    def close(self) -> None:
        """Close the clients (the processes are the caller's to stop)."""
        if self.client is not None:
            self.client.close()
        if self.queue is not None:
            self.queue.close()
        if self.async_queue is not None:
            self.loop.run_until_complete(self.async_queue.aclose())
        self.loop.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    try:
        import celery  # noqa: F401
    except ImportError:
        print('Celery is not installed here: pip install -e ".[bench]"', file=sys.stderr)
        return 2

    before = load_now()
    with tempfile.TemporaryDirectory(prefix="crank-client-bench-") as tmp:
        port = free_port()
        redis = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", tmp],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        redis_url = f"redis://127.0.0.1:{port}/0"
        os.environ["BENCH_REDIS_URL"] = redis_url
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(WORKERS), os.environ.get("PYTHONPATH", "")]),
        }
        systems = None
        procs: list[subprocess.Popen[bytes]] = []
        try:
            import redis as redis_lib

            wait_for(lambda: bool(redis_lib.Redis(port=port).ping()), "redis-server")
            systems = Systems(redis_url, env, procs)
            cases = systems.cases()
            samples: dict[str, list[float]] = {name: [] for name in cases}
            p50s: dict[str, list[float]] = {name: [] for name in cases}
            for _ in range(args.rounds):
                for name, one in cases.items():
                    taken = timed(one, args.samples, args.warmup)
                    samples[name] += taken
                    p50s[name].append(percentiles(taken)[0])
        finally:
            try:
                if systems is not None:
                    systems.close()
            finally:
                stop(procs)  # whatever failed: no worker or crank run outlives this
                redis.terminate()
                redis.wait(timeout=10)
    after = load_now()

    print(
        f"client round trip, {args.rounds} rounds x {args.samples} samples "
        f"(python {platform.python_version()}, load {before} at the start, {after} at the end)"
    )
    print()
    print("| round trip | p50 ms | p99 ms | p50 per round (ms) |")
    print("|---|---:|---:|---|")
    for name, taken in samples.items():
        p50, p99 = percentiles(taken)
        rounds = " / ".join(f"{v:.2f}" for v in p50s[name])
        print(f"| {name} | {p50:.2f} | {p99:.2f} | {rounds} |")
    print()
    crank_p50 = percentiles(samples["crank connect (sync)"])[0]
    celery_p50 = percentiles(samples["celery delay().get()"])[0]
    why_not = verdict(before, after)
    if why_not:
        print(f"crank connect p50 / celery p50: not reported: {why_not}")
    else:
        ratio = crank_p50 / celery_p50
        met = "met" if ratio <= 0.5 else "MISSED"
        print(f"crank connect p50 / celery p50 = {ratio:.2f} (goal <= 0.50: {met})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
