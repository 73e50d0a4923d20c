"""Queue benchmark: crank (SQLite, Redis Streams) against Celery, Dramatiq, RQ and arq.

    pip install -e ".[bench]"
    python benchmarks/queue.py [--tasks 10000] [--samples 200] [--systems crank-redis,rq]

arq (0.26.3 and later) declares ``redis<6`` while Celery's Redis transport (kombu 5.7)
needs redis-py >= 6.4: their current releases cannot share an environment, so the
``bench`` extra leaves arq out (a run there skips it) and arq is measured from an
environment of its own, with crank-redis beside it as the reference on that
environment's redis-py::

    python -m venv .venv-arq && .venv-arq/bin/pip install -e ".[bench-arq]"
    .venv-arq/bin/python benchmarks/queue.py --systems crank-redis,arq

(``nox -s bench_arq`` does the same.)

All systems share one private redis-server (started here on a free loopback
port, no persistence) and run the same no-op task, which only bumps a counter
in shared memory (``queue_workers/bench_counter.py``, about a microsecond, no
network) so completion is observed the same way for everyone. For each system:

* enqueue/s: N tasks submitted from this process, with the system's batch API
  where it has one (crank ``submit_many``, RQ ``enqueue_many``), else one by one;
* first task: seconds from spawning 2 worker processes (tasks already queued)
  to the first completed task;
* cold-start drain/s: N divided by the time from the first to the last
  completed task of that first backlog. With 10,000 tasks a fast queue drains
  in well under a second, about as long as a worker process takes to start, so
  this figure mostly says how far apart the two processes started;
* drain/s: the same once both processes are warm (each has run tasks): the
  workers are stopped (SIGSTOP to their process groups, at a moment none holds
  a lock the enqueuing needs), N tasks are queued, and the time runs from
  SIGCONT to the last completion;
* CPU µs/task: user + system CPU of the worker processes (and their children)
  plus redis-server during the warm drain, per task: what a task costs,
  whatever else the machine is doing at the same time;
* round trip p50/p99: submit one task and wait until its result is visible to
  the client, ``--samples`` times in a row with the workers idle and waiting.

Peers run with their defaults except: Celery and RQ workers in one process each
(Celery ``-P solo``, RQ ``SimpleWorker``, no fork per job), Dramatiq
``--processes 2`` (8 threads each, its default), arq ``poll_delay`` 10 ms
(default 500 ms).
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this file would shadow the standard library's ``queue`` (which
# redis-py imports): its folder goes to the end of the import path, not the front.
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    sys.path.append(sys.path.pop(0))

import argparse
import asyncio
import datetime as dt
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass
from typing import Any

from process_groups import stop_group, stop_groups

HERE = Path(__file__).resolve().parent
WORKERS = HERE / "queue_workers"
SYSTEMS = ("crank-sqlite", "crank-redis", "celery", "dramatiq", "rq", "arq")
#: every system runs its tasks in this many worker processes.
WORKER_PROCESSES = 2


@dataclass(frozen=True)
class Row:
    name: str
    enqueue_per_s: float
    #: warm workers (each has run tasks), the backlog queued while they were stopped.
    drain_per_s: float
    #: workers started with the backlog already queued: start-up skew included.
    cold_drain_per_s: float
    p50_ms: float
    p99_ms: float
    first_task_s: float
    #: CPU time of the worker processes and redis-server per task while draining.
    cpu_us_per_task: float


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_redis(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(workdir)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,  # ended with process_groups.stop_group, as the workers
    )  # fmt: skip
    import redis

    client = redis.Redis(port=port)
    for _ in range(200):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.02)
    client.close()
    return proc, f"redis://127.0.0.1:{port}/0"


def console_script(name: str) -> str:
    """``name``'s console script from this interpreter's environment (run as
    ``.venv-arq/bin/python benchmarks/queue.py``, its bin/ need not be on PATH)."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.is_file() else shutil.which(name) or name


class System:
    """One queue under test: how to enqueue, how to start workers, one round trip."""

    name = ""

    def __init__(self, redis_url: str, workdir: Path) -> None:
        self.redis_url = redis_url
        self.workdir = workdir

    def enqueue(self, n: int) -> None:
        raise NotImplementedError

    def worker_commands(self) -> list[list[str]]:
        raise NotImplementedError

    def round_trip(self) -> None:
        raise NotImplementedError

    def quiet(self) -> bool:
        """With the workers stopped: can the backlog be enqueued without waiting on them?"""
        return True

    def close(self) -> None:
        return None


class Crank(System):
    batch_size = 100

    def __init__(self, redis_url: str, workdir: Path, broker_url: str) -> None:
        super().__init__(redis_url, workdir)
        from crank.runtime.brokers import open_broker

        self.broker_url = broker_url
        self.broker = open_broker(broker_url)

    def enqueue(self, n: int) -> None:
        from crank.runtime.brokers.contract import TaskSpec

        for start in range(0, n, 1000):
            batch = min(1000, n - start)
            self.broker.submit_many([TaskSpec("bench.noop", {}) for _ in range(batch)])

    def worker_commands(self) -> list[list[str]]:
        return [
            [sys.executable, "-m", "crank.runtime.worker_process", "--broker", self.broker_url,
             "--manifest", str(WORKERS / "crank.yaml"), "--consumer", f"bench-{i}",
             "--batch-size", str(self.batch_size)]
            for i in range(WORKER_PROCESSES)
        ]  # fmt: skip

    def round_trip(self) -> None:
        from crank.runtime.brokers.contract import TaskSpec

        task_id = self.broker.submit(TaskSpec("bench.noop", {})).id
        while True:
            record = self.broker.get(task_id)
            if record is not None and record.done:
                return
            time.sleep(0.0002)

    def close(self) -> None:
        self.broker.close()


class CrankSqlite(Crank):
    name = "crank-sqlite"

    def __init__(self, redis_url: str, workdir: Path) -> None:
        self.db_path = workdir / "bench-queue.db"
        super().__init__(redis_url, workdir, f"sqlite:///{self.db_path}")

    def quiet(self) -> bool:
        """False when a stopped worker holds the write lock (stopped mid-transaction)."""
        import sqlite3

        db = sqlite3.connect(self.db_path, timeout=0, isolation_level=None)
        try:
            db.execute("BEGIN IMMEDIATE")
            db.execute("ROLLBACK")
            return True
        except sqlite3.OperationalError:
            return False
        finally:
            db.close()


class CrankRedis(Crank):
    name = "crank-redis"

    def __init__(self, redis_url: str, workdir: Path) -> None:
        super().__init__(redis_url, workdir, redis_url)


class Celery(System):
    name = "celery"

    def __init__(self, redis_url: str, workdir: Path) -> None:
        super().__init__(redis_url, workdir)
        import bench_celery

        self.task = bench_celery.noop

    def enqueue(self, n: int) -> None:
        for _ in range(n):
            self.task.apply_async()

    def worker_commands(self) -> list[list[str]]:
        return [
            [sys.executable, "-m", "celery", "-A", "bench_celery", "worker", "-P", "solo",
             "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "WARNING",
             "-n", f"bench{i}@localhost"]
            for i in range(WORKER_PROCESSES)
        ]  # fmt: skip

    def round_trip(self) -> None:
        self.task.apply_async().get(timeout=10)


class Dramatiq(System):
    name = "dramatiq"

    def __init__(self, redis_url: str, workdir: Path) -> None:
        super().__init__(redis_url, workdir)
        import bench_dramatiq

        self.actor = bench_dramatiq.noop

    def enqueue(self, n: int) -> None:
        for _ in range(n):
            self.actor.send()

    def worker_commands(self) -> list[list[str]]:
        procs = str(WORKER_PROCESSES)
        return [[sys.executable, "-m", "dramatiq", "bench_dramatiq", "--processes", procs]]

    def round_trip(self) -> None:
        self.actor.send().get_result(block=True, timeout=10_000)


class Rq(System):
    name = "rq"

    def __init__(self, redis_url: str, workdir: Path) -> None:
        super().__init__(redis_url, workdir)
        import bench_rq
        import redis
        from rq import Queue

        self.func = bench_rq.noop
        self.conn = redis.Redis.from_url(redis_url)
        self.queue = Queue("bench", connection=self.conn)

    def enqueue(self, n: int) -> None:
        from rq import Queue

        for start in range(0, n, 1000):
            batch = min(1000, n - start)
            self.queue.enqueue_many([Queue.prepare_data(self.func) for _ in range(batch)])

    def worker_commands(self) -> list[list[str]]:
        rq = console_script("rq")
        return [
            [rq, "worker", "-u", self.redis_url, "-w", "rq.worker.SimpleWorker", "-q", "bench"]
            for _ in range(WORKER_PROCESSES)
        ]

    def round_trip(self) -> None:
        job = self.queue.enqueue(self.func)
        deadline = time.monotonic() + 10
        while job.latest_result() is None and time.monotonic() < deadline:
            time.sleep(0.0002)

    def close(self) -> None:
        self.conn.close()


class Arq(System):
    name = "arq"

    def __init__(self, redis_url: str, workdir: Path) -> None:
        super().__init__(redis_url, workdir)
        import bench_arq
        from arq import create_pool

        self.runner = asyncio.Runner()
        self.pool: Any = self.runner.run(create_pool(bench_arq.SETTINGS))

    def enqueue(self, n: int) -> None:
        async def enqueue_all() -> None:
            for start in range(0, n, 100):
                batch = min(100, n - start)
                await asyncio.gather(*(self.pool.enqueue_job("noop") for _ in range(batch)))

        self.runner.run(enqueue_all())

    def worker_commands(self) -> list[list[str]]:
        arq = console_script("arq")
        return [[arq, "bench_arq.WorkerSettings"] for _ in range(WORKER_PROCESSES)]

    def round_trip(self) -> None:
        async def one() -> None:
            job = await self.pool.enqueue_job("noop")
            await job.result(timeout=10, poll_delay=0.0005)

        self.runner.run(one())

    def close(self) -> None:
        self.runner.run(self.pool.aclose())
        self.runner.close()


CLASSES: dict[str, type[System]] = {
    "crank-sqlite": CrankSqlite,
    "crank-redis": CrankRedis,
    "celery": Celery,
    "dramatiq": Dramatiq,
    "rq": Rq,
    "arq": Arq,
}

#: how to get a system that is not installed here.
INSTALL = {
    **dict.fromkeys(CLASSES, "pip install -e '.[bench]'"),
    "arq": "pip install -e '.[bench-arq]' into an environment of its own: arq declares redis<6",
}


def spawn(commands: list[list[str]], env: dict[str, str]) -> list[subprocess.Popen[bytes]]:
    return [
        subprocess.Popen(
            cmd,
            env=env,
            cwd=WORKERS,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        for cmd in commands
    ]


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants (Linux /proc)."""
    out = [pid]
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in children:
            out += _tree(int(child))
    return out


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of the processes and their descendants, from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for root in pids:
        for pid in _tree(root):
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def signal_all(procs: list[subprocess.Popen[bytes]], signum: int) -> None:
    """Send ``signum`` to each worker's process group (workers and their children)."""
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signum)


def warm_up(system: System, counter_file: str, processes: int) -> None:
    """Feed one task at a time until every worker process has run one, and all are done."""
    import bench_counter

    sent = done = bench_counter.total(counter_file)
    deadline = time.perf_counter() + 120
    while time.perf_counter() < deadline:
        done = bench_counter.total(counter_file)
        if done >= sent:
            if bench_counter.processes(counter_file) >= processes:
                return
            system.enqueue(1)
            sent += 1
        time.sleep(0.001)
    raise RuntimeError(f"{system.name}: not every worker process ran a task within 120 s")


def pause(system: System, procs: list[subprocess.Popen[bytes]]) -> None:
    """SIGSTOP the workers at a moment they hold no lock the enqueuing needs."""
    for _ in range(200):
        signal_all(procs, signal.SIGSTOP)
        if system.quiet():
            return
        signal_all(procs, signal.SIGCONT)
        time.sleep(0.005)
    raise RuntimeError(f"{system.name}: the workers kept a lock held")


def wait_for(counter_file: str, target: int, what: str) -> float:
    import bench_counter

    deadline = time.perf_counter() + 600
    while time.perf_counter() < deadline:
        if bench_counter.total(counter_file) >= target:
            return time.perf_counter()
        time.sleep(0.001)
    raise RuntimeError(f"{what}: not finished in 600 s")


def measure(system: System, n: int, samples: int, env: dict[str, str], redis_pid: int) -> Row:
    import bench_counter

    counter_file = env["BENCH_COUNTER_FILE"]
    bench_counter.create(counter_file)
    started = time.perf_counter()
    system.enqueue(n)
    enqueue_s = time.perf_counter() - started

    # cold: the workers start with the whole backlog waiting (start-up included)
    t0 = time.perf_counter()
    procs = spawn(system.worker_commands(), env)
    pids = [p.pid for p in procs] + [redis_pid]
    try:
        while not bench_counter.total(counter_file):
            if time.perf_counter() > t0 + 120:
                raise RuntimeError(f"{system.name}: no task done within 120 s of the start")
            time.sleep(0.001)
        cold_first = time.perf_counter()
        cold_last = wait_for(counter_file, n, system.name)

        # warm: every process has run tasks; stopped, the backlog is queued, then they go
        warm_up(system, counter_file, WORKER_PROCESSES)
        pause(system, procs)
        base = bench_counter.total(counter_file)
        system.enqueue(n)
        cpu_first = cpu_seconds(pids)
        go = time.perf_counter()
        signal_all(procs, signal.SIGCONT)
        last = wait_for(counter_file, base + n, system.name)
        cpu_last = cpu_seconds(pids)

        for _ in range(5):  # warm up the round-trip path
            system.round_trip()
        times = []
        for _ in range(samples):
            begin = time.perf_counter()
            system.round_trip()
            times.append(time.perf_counter() - begin)
    finally:
        signal_all(procs, signal.SIGCONT)
        stop_groups(procs, grace_s=10)
    quantiles = statistics.quantiles(times, n=100, method="inclusive")
    return Row(
        name=system.name,
        enqueue_per_s=n / enqueue_s,
        drain_per_s=n / max(last - go, 1e-9),
        cold_drain_per_s=n / max(cold_last - cold_first, 1e-9),
        p50_ms=statistics.median(times) * 1000,
        p99_ms=quantiles[98] * 1000,
        first_task_s=cold_first - t0,
        cpu_us_per_task=(cpu_last - cpu_first) / n * 1e6,
    )


def median_row(name: str, rows: list[Row]) -> Row:
    def med(attr: str) -> float:
        return float(statistics.median(getattr(r, attr) for r in rows))

    return Row(
        name=name,
        enqueue_per_s=med("enqueue_per_s"),
        drain_per_s=med("drain_per_s"),
        cold_drain_per_s=med("cold_drain_per_s"),
        p50_ms=med("p50_ms"),
        p99_ms=med("p99_ms"),
        first_task_s=med("first_task_s"),
        cpu_us_per_task=med("cpu_us_per_task"),
    )


def table(rows: list[Row]) -> str:
    head = (
        "| system | enqueue/s | drain/s (2 procs) | cold-start drain/s | CPU µs/task "
        "| round trip p50 ms | p99 ms | first task s |"
    )
    lines = [head, "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(
            f"| {r.name} | {r.enqueue_per_s:,.0f} | {r.drain_per_s:,.0f} "
            f"| {r.cold_drain_per_s:,.0f} | {r.cpu_us_per_task:,.0f} | {r.p50_ms:.2f} "
            f"| {r.p99_ms:.2f} | {r.first_task_s:.2f} |"
        )
    return "\n".join(lines)


def verdict(rows: list[Row]) -> list[str]:
    by = {r.name: r for r in rows}
    peers = [r for r in rows if not r.name.startswith("crank")]
    out = []
    if "crank-redis" in by and peers:
        for attr, label in (("drain_per_s", "drain"), ("cold_drain_per_s", "cold-start drain")):
            fastest = max(peers, key=lambda r: float(getattr(r, attr)))
            ratio = float(getattr(by["crank-redis"], attr)) / float(getattr(fastest, attr))
            out.append(
                f"crank-redis {label} = {ratio:.1f}x the fastest peer ({fastest.name}): "
                f"target >= 10x {'MET' if ratio >= 10 else 'NOT MET'}"
            )
        best_p50 = min(peers, key=lambda r: r.p50_ms)
        for name in ("crank-redis", "crank-sqlite"):
            if name in by:
                ok = by[name].p99_ms <= best_p50.p50_ms
                out.append(
                    f"{name} p99 {by[name].p99_ms:.2f} ms vs fastest peer p50 "
                    f"{best_p50.p50_ms:.2f} ms ({best_p50.name}): {'MET' if ok else 'NOT MET'}"
                )
    if "crank-redis" in by and "crank-sqlite" in by:
        share = by["crank-sqlite"].drain_per_s / by["crank-redis"].drain_per_s
        out.append(
            f"crank-sqlite drain = {share:.0%} of crank-redis: target >= 50% "
            f"{'MET' if share >= 0.5 else 'NOT MET'}"
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    parser.add_argument(
        "--repeat", type=int, default=1, help="rounds over all systems; the table shows medians"
    )
    parser.add_argument(
        "--crank-batch", type=int, default=Crank.batch_size, help="claim batch size"
    )
    args = parser.parse_args(argv)
    Crank.batch_size = args.crank_batch
    names = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = sorted(set(names) - set(SYSTEMS))
    if unknown:
        parser.error(f"unknown systems: {', '.join(unknown)} (known: {', '.join(SYSTEMS)})")
    if shutil.which("redis-server") is None:
        print(
            "error: redis-server is not installed (apt-get install redis-server)", file=sys.stderr
        )
        return 3
    sys.path.insert(0, str(WORKERS))
    runs: dict[str, list[Row]] = {}
    with tempfile.TemporaryDirectory(prefix="crank-bench-") as tmp:
        workdir = Path(tmp)
        server, redis_url = start_redis(workdir)
        os.environ["BENCH_REDIS_URL"] = redis_url
        os.environ["BENCH_COUNTER_FILE"] = str(workdir / "counter.bin")
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(WORKERS), os.environ.get("PYTHONPATH", "")]),
        }
        import redis

        admin = redis.Redis.from_url(redis_url)
        try:
            for round_no in range(1, args.repeat + 1):
                for name in names:
                    admin.flushall()
                    try:
                        system = CLASSES[name](redis_url, workdir)
                    except ImportError as exc:
                        print(f"{name}: skipped ({exc}; {INSTALL[name]})", file=sys.stderr)
                        continue
                    try:
                        row = measure(system, args.tasks, args.samples, env, server.pid)
                    finally:
                        system.close()
                    runs.setdefault(name, []).append(row)
                    print(f"round {round_no}: {name}: {row}", file=sys.stderr)
        finally:
            admin.close()
            stop_group(server, grace_s=10)
    rows = [median_row(name, measured) for name, measured in runs.items()]
    print(
        f"{args.tasks} no-op tasks, {args.samples} round trips, median of {args.repeat} "
        f"round(s); {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, {dt.date.today().isoformat()}\n"
    )
    print(table(rows))
    print()
    for line in verdict(rows):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
