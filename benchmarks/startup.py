"""Start-up and footprint: ``crank --help`` next to ``python -c pass``, a worker's peak RSS.

    pip install -e ".[bench]"
    python benchmarks/startup.py [--runs 41] [--tasks 2000]

* **Start-up**: ``python -c pass``, ``crank --help`` (the console script, its help text
  from the cache after the first run), ``python -c "import crank"`` and
  ``python -m crank.runtime.worker_process --help`` (what a worker imports before its
  first task) each run ``--runs`` times in fresh processes, taking turns, with their
  bytecode cached (as an installed package runs). Timed against this interpreter
  itself (``sys.executable``), never a ``python`` shim on PATH. Wall time (median and
  best) and CPU time (user + system, median) per command: CPU time does not count
  waiting for a core, so it moves less with the machine's load.
* **Footprint**: one worker process runs ``--tasks`` echo tasks (SQLite and Redis
  brokers, and the one ``crank run`` starts, with metrics on); its peak RSS
  (``VmHWM``) is read before it stops. Dramatiq's worker
  process (``--processes 1 --threads 1``, the one that runs the actor) runs the same
  echo on the same Redis, for comparison.
* ``-X importtime``: the largest imports of ``crank --help`` and of a worker
  process, cumulative, to show where the time goes.

Goals (issue 16): ``crank --help`` <= 3x ``python -c pass``; a worker process <= 30 MB
peak RSS. The load average is printed; on a busy machine the ratios are withheld.
"""

from __future__ import annotations

import sys
from pathlib import Path

# benchmarks/queue.py would shadow the standard library's ``queue``: this folder goes
# to the end of the import path.
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    sys.path.append(sys.path.pop(0))

import argparse
import os
import platform
import re
import socket
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass

from machine_load import load_now, verdict
from process_groups import stop_group, stop_trees

HERE = Path(__file__).resolve().parent
WORKERS = HERE / "client_workers"
#: As an installed package runs: with its bytecode cached.
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
PYTHON = sys.executable
CRANK = str(Path(sys.executable).parent / "crank")


@dataclass(frozen=True)
class Timing:
    wall_median_s: float
    wall_best_s: float
    cpu_median_s: float


def run_once(argv: list[str]) -> tuple[float, float]:
    """(wall, user + system CPU) of one fresh process."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{argv} exited with {proc.returncode}")
    return wall, usage.ru_utime + usage.ru_stime


def start_up(commands: dict[str, list[str]], runs: int) -> dict[str, Timing]:
    walls: dict[str, list[float]] = {name: [] for name in commands}
    cpus: dict[str, list[float]] = {name: [] for name in commands}
    for argv in commands.values():  # one untimed run each: bytecode written, files cached
        run_once(argv)
    for _ in range(runs):
        for name, argv in commands.items():
            wall, cpu = run_once(argv)
            walls[name].append(wall)
            cpus[name].append(cpu)
    return {
        name: Timing(
            statistics.median(walls[name]), min(walls[name]), statistics.median(cpus[name])
        )
        for name in commands
    }


def import_profile(argv: list[str], top: int) -> list[tuple[float, str]]:
    """The ``top`` largest cumulative imports (ms, module) of one run with -X importtime."""
    out = subprocess.run(
        [PYTHON, "-X", "importtime", *argv],
        env={**ENV, "CRANK_HELP_CACHE": "0"},
        capture_output=True,
        text=True,
        check=False,
    ).stderr
    rows = []
    for line in out.splitlines():
        match = re.match(r"import time:\s+\d+ \|\s+(\d+) \|( *)(\S+)", line)
        if match and len(match.group(2)) <= 3:  # top-level imports and their children
            rows.append((int(match.group(1)) / 1000, match.group(2) + match.group(3)))
    return sorted(rows, reverse=True)[:top]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for {pid}")


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def crank_worker_rss(broker_url: str, tasks: int) -> float:
    import crank

    argv = [
        PYTHON, "-m", "crank.runtime.worker_process", "--broker", broker_url,
        "--manifest", str(WORKERS / "crank.yaml"), "--consumer", "footprint",
    ]  # fmt: skip
    env = {**ENV, "PYTHONPATH": os.pathsep.join([str(WORKERS), ENV.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(
        argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group, ended whole by stop_group
    )  # fmt: skip
    try:
        with crank.connect(broker_url) as queue:
            sent = queue.submit_many([("bench.echo", {"text": f"t{i}"}) for i in range(tasks)])
            for task in sent:
                task.result(timeout=120)
        return peak_rss_mb(proc.pid)
    finally:
        stop_group(proc, grace_s=30)


def crank_run_worker_rss(broker_url: str, tasks: int) -> float:
    """The worker process ``crank run`` starts (metrics on, as in production)."""
    import crank

    argv = [
        PYTHON, "-m", "crank", "run", "--broker", broker_url, "--port", str(free_port()),
        "--worker", str(WORKERS), "--min-workers", "1", "--max-workers", "1",
    ]  # fmt: skip
    proc = subprocess.Popen(
        argv, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    try:
        with crank.connect(broker_url) as queue:
            sent = queue.submit_many([("bench.echo", {"text": f"t{i}"}) for i in range(tasks)])
            for task in sent:
                task.result(timeout=120)
        return max(peak_rss_mb(pid) for pid in children(proc.pid))
    finally:
        # crank run's workers lead process groups of their own: those end too
        stop_trees([proc], grace_s=30)


def dramatiq_worker_rss(redis_url: str, tasks: int) -> float:
    argv = [PYTHON, "-m", "dramatiq", "bench_dramatiq_echo", "--processes", "1", "--threads", "1"]
    env = {**ENV, "BENCH_REDIS_URL": redis_url, "PYTHONPATH": str(WORKERS)}
    proc = subprocess.Popen(
        argv, env=env, cwd=WORKERS, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,  # dramatiq's worker processes are ended with it
    )  # fmt: skip
    try:
        os.environ["BENCH_REDIS_URL"] = redis_url
        sys.path.insert(0, str(WORKERS))
        import bench_dramatiq_echo

        messages = [bench_dramatiq_echo.echo.send(f"t{i}") for i in range(tasks)]
        for message in messages:
            message.get_result(block=True, timeout=120_000)
        workers = children(proc.pid)
        return max(peak_rss_mb(pid) for pid in workers)
    finally:
        stop_group(proc, grace_s=30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=41)
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args()
    before = load_now()

    commands = {
        "python -c pass": [PYTHON, "-c", "pass"],
        "crank --help": [CRANK, "--help"],
        "python -c 'import crank'": [PYTHON, "-c", "import crank"],
        "worker process imports (--help)": [
            PYTHON, "-m", "crank.runtime.worker_process", "--help",
        ],
    }  # fmt: skip
    timings = start_up(commands, args.runs)

    rss: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="crank-startup-bench-") as tmp:
        rss["crank worker, SQLite"] = crank_worker_rss(f"sqlite:///{tmp}/q.db", args.tasks)
        rss["crank run's worker, SQLite"] = crank_run_worker_rss(
            f"sqlite:///{tmp}/run.db", args.tasks
        )
        port = free_port()
        redis = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", tmp],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,  # ended by stop_group, as the workers
        )  # fmt: skip
        try:
            time.sleep(0.3)  # redis-server binds within milliseconds; the clients retry anyway
            url = f"redis://127.0.0.1:{port}/0"
            rss["crank worker, Redis"] = crank_worker_rss(url, args.tasks)
            try:
                rss["dramatiq worker process"] = dramatiq_worker_rss(url, args.tasks)
            except ImportError:
                print("(dramatiq not installed: pip install -e '.[bench]')", file=sys.stderr)
        finally:
            stop_group(redis, grace_s=10)
    after = load_now()

    print(
        f"start-up and footprint (python {platform.python_version()} at {PYTHON}, "
        f"{args.runs} runs each, load {before} at the start, {after} at the end)"
    )
    print()
    print("| command | wall median ms | wall best ms | CPU median ms |")
    print("|---|---:|---:|---:|")
    for name, t in timings.items():
        print(
            f"| `{name}` | {t.wall_median_s * 1000:.1f} | {t.wall_best_s * 1000:.1f} "
            f"| {t.cpu_median_s * 1000:.1f} |"
        )
    print()
    print(f"| process ({args.tasks} echo tasks) | peak RSS MB |")
    print("|---|---:|")
    for name, mb in rss.items():
        print(f"| {name} | {mb:.1f} |")
    print()
    for label, argv in (
        ("crank --help made afresh (CRANK_HELP_CACHE=0)", [CRANK, "--help"]),
        ("a worker process's start", ["-m", "crank.runtime.worker_process", "--help"]),
    ):
        print(f"largest imports of {label} (cumulative ms, one run with -X importtime):")
        for ms, module in import_profile(argv, args.top):
            print(f"    {ms:7.1f}  {module}")
    print()
    python, crank_help = timings["python -c pass"], timings["crank --help"]
    worst_rss = max(v for k, v in rss.items() if k.startswith("crank"))
    why_not = verdict(before, after)
    if why_not:
        print(f"ratios not reported: {why_not}")
    else:
        by_median = crank_help.wall_median_s / python.wall_median_s
        by_best = crank_help.wall_best_s / python.wall_best_s
        met = "met" if by_median <= 3 else "MISSED"
        print(
            f"crank --help / python -c pass = {by_median:.2f}x by median, {by_best:.2f}x "
            f"best to best (goal <= 3x: {met})"
        )
    for name, mb in rss.items():
        if name.startswith("crank"):
            met = "met" if mb <= 30 else "MISSED"
            print(f"{name}: peak RSS {mb:.1f} MB (goal <= 30 MB: {met})")
    met = "met" if worst_rss <= 30 else "MISSED"
    print(f"largest crank worker peak RSS = {worst_rss:.1f} MB (goal <= 30 MB: {met})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
