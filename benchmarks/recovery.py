"""How long after a ``kill -9`` the tasks the dead worker held are finished.

    python benchmarks/recovery.py [--tasks 10000] [--kills 5] [--backends sqlite,redis]

Three worker processes (``python -m crank.runtime.worker_process``, the runtime
fixture worker of the tests, batches of 10, a 2 s visibility timeout kept alive by
a 0.3 s heartbeat) drain a backlog of 1 ms tasks. While work is waiting, a random
serving worker is killed with SIGKILL and replaced, ``--kills`` times. The tasks it
held are read straight from the backend at the moment of death. Two ways back:

* recover: the supervisor's path, ``broker.recover(consumer)`` right after the
  death makes them deliverable at once;
* visibility timeout: nobody calls recover; they come back once their 2 s lease,
  no longer extended, runs out.

For each, the table gives the seconds from the kill to the completion of each
interrupted task (median, p95, max). docs/runtime.md promises "immediately" for
the first and about the visibility timeout for the second; the tests check that
nothing is lost and each interrupted task ran again, this script how fast.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, benchmarks/queue.py would shadow the standard library's ``queue``
# (which redis-py imports): take this folder off the import path first.
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    del sys.path[0]

import argparse
import os
import random
import shutil
import socket
import sqlite3
import statistics
import subprocess
import tempfile
import time

from crank.runtime.brokers import open_broker
from crank.runtime.brokers.contract import Broker, TaskSpec

ROOT = Path(__file__).resolve().parents[1]
FIXTURE_WORKERS = ROOT / "tests" / "fixtures" / "queue_workers"
WORKERS = 3
LOAD = 500


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
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return proc, f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("redis-server did not start")


def held_by(url: str, consumer: str) -> set[str]:
    """Ids of the tasks a dead consumer held, read straight from the backend."""
    if url.startswith("sqlite:///"):
        with sqlite3.connect(url[len("sqlite:///") :]) as db:
            rows = db.execute(
                "SELECT id FROM tasks WHERE consumer = ? AND status = 'running'", (consumer,)
            ).fetchall()
        db.close()
        return {r[0] for r in rows}
    import redis

    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        ids: set[str] = set()
        for stream in client.zrange("crank:streams", 0, -1):
            for entry in client.xpending_range(stream, "crank", "-", "+", 100_000, consumer):
                for _, fields in client.xrange(stream, entry["message_id"], entry["message_id"]):
                    ids.add(fields["t"])
        return ids
    finally:
        client.close()


class Pool:
    def __init__(self, url: str, logs: Path) -> None:
        self.url = url
        self.logs = logs
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.env = {**os.environ, "PYTHONPATH": str(FIXTURE_WORKERS), "PYTHONUNBUFFERED": "1"}

    def spawn(self) -> None:
        consumer = f"worker-{len(self.procs) + 1}"
        with (self.logs / f"{consumer}.log").open("wb") as log:
            self.procs[consumer] = subprocess.Popen(
                [sys.executable, "-m", "crank.runtime.worker_process", "--broker", self.url,
                 "--manifest", str(FIXTURE_WORKERS / "crank.yaml"), "--consumer", consumer,
                 "--batch-size", "10", "--visibility-timeout", "2", "--heartbeat", "0.3",
                 "--block", "0.2"],
                env=self.env, stdout=subprocess.DEVNULL, stderr=log,
            )  # fmt: skip

    def serving(self) -> list[str]:
        for consumer, proc in self.procs.items():
            if proc.poll() not in (None, -9):
                log = (self.logs / f"{consumer}.log").read_text(errors="replace")
                raise SystemExit(f"worker {consumer} exited with {proc.returncode}:\n{log}")
        return [
            c
            for c, p in self.procs.items()
            if p.poll() is None
            and f"worker {c} serving" in (self.logs / f"{c}.log").read_text(errors="replace")
        ]

    def kill(self, consumer: str) -> float:
        self.procs[consumer].kill()
        self.procs[consumer].wait()
        return time.time()

    def close(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def run_case(url: str, *, recover: bool, tasks: int, kills: int, workdir: Path) -> list[float]:
    """Seconds from each kill to the completion of each task the killed worker held."""
    broker: Broker = open_broker(url)
    logs = Path(tempfile.mkdtemp(dir=workdir))
    pool = Pool(url, logs)
    rng = random.Random(5)
    spec = TaskSpec("fixture.sleep", {"seconds": 0.001}, max_attempts=10)
    ids = [r.id for r in broker.submit_many([spec] * tasks)]
    try:
        for _ in range(WORKERS):
            pool.spawn()
        interrupted: list[tuple[float, str]] = []
        hits = 0
        deadline = time.monotonic() + 600
        while hits < kills and time.monotonic() < deadline:
            ready = pool.serving()
            if len(ready) < WORKERS:
                time.sleep(0.05)
                continue
            if sum(broker.stats().pending.values()) < LOAD:
                ids += [r.id for r in broker.submit_many([spec] * (tasks // 5))]
            victim = rng.choice(ready)
            died_at = pool.kill(victim)
            held = held_by(url, victim)
            if recover:
                broker.recover(victim)
            hits += bool(held)
            interrupted += [(died_at, task_id) for task_id in held]
            pool.spawn()
        while time.monotonic() < deadline:
            stats = broker.stats()
            if not stats.pending and not stats.running:
                break
            time.sleep(0.2)
        latencies = []
        for died_at, task_id in interrupted:
            record = broker.get(task_id)
            if record is None or record.status != "succeeded":
                raise SystemExit(f"task {task_id} was lost: {record}")
            latencies.append(record.updated_at - died_at)
        return latencies
    finally:
        pool.close()
        broker.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--backends", default="sqlite,redis")
    args = parser.parse_args()
    backends = args.backends.split(",")
    print(f"python {sys.version.split()[0]} ({sys.executable}), {os.cpu_count()} cpus, "
          f"load average {os.getloadavg()[0]:.1f} before the run")  # fmt: skip
    print(
        f"{args.tasks:,} tasks of 1 ms, {WORKERS} workers, {args.kills} kills that hit a "
        "worker holding tasks, per case\n"
    )
    print("| backend | way back | tasks interrupted | median (s) | p95 (s) | max (s) |")
    print("|---|---|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        redis_proc = None
        try:
            for backend in backends:
                if backend == "redis":
                    if shutil.which("redis-server") is None:
                        print("| redis | - | redis-server is not installed | | | |")
                        continue
                    redis_proc, base = start_redis(workdir)
                for recover in (True, False):
                    if backend == "redis":
                        import redis

                        redis.Redis.from_url(base).flushdb()  # our private server
                        url = base
                    else:
                        url = f"sqlite:///{workdir / f'queue-{recover}.db'}"
                    took = run_case(
                        url, recover=recover, tasks=args.tasks, kills=args.kills, workdir=workdir
                    )
                    way = "recover" if recover else "visibility timeout (2 s)"
                    p95 = statistics.quantiles(took, n=20)[-1] if len(took) > 1 else took[0]
                    print(f"| {backend} | {way} | {len(took)} | {statistics.median(took):.2f} | "
                          f"{p95:.2f} | {max(took):.2f} |")  # fmt: skip
                if redis_proc is not None:
                    redis_proc.terminate()
                    redis_proc.wait()
                    redis_proc = None
        finally:
            if redis_proc is not None:
                redis_proc.kill()
    print(f"\nload average {os.getloadavg()[0]:.1f} after the run")


if __name__ == "__main__":
    main()
