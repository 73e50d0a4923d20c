"""`crank new-worker` against raw `cookiecutter` on the same template.

Both produce the same project (cookiecutter's post-generation hook renders the
deployment artifacts with crank, as `crank new-worker` does in-process). Timed
as users run them: a fresh process each time, median of N runs, plus the
in-process cost of each. Goal: `crank new-worker` <= 1 s and <= 1.2x cookiecutter.

    python benchmarks/scaffold.py [--runs 7]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from crank.generate.templates import worker_template

# Running `python benchmarks/scaffold.py` puts benchmarks/ first on sys.path, where
# benchmarks/queue.py would shadow the standard library's queue module.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

CRANK = "import sys; from crank.cli import main; sys.exit(main())"


CPU: dict[str, list[float]] = {}


def timed(argv: list[str], out: Path, name: str) -> float:
    """Wall time of one process; its CPU time (user + sys) is kept in CPU[name]."""
    import resource

    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    CPU.setdefault(name, []).append(cpu)
    return wall


def in_process_new_worker(out: Path) -> float:
    from crank.generate.scaffold import new_worker

    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    start = time.perf_counter()
    new_worker("bench-echo", output_dir=out)
    return time.perf_counter() - start


def in_process_cookiecutter(out: Path) -> float:
    from cookiecutter.main import cookiecutter

    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    start = time.perf_counter()
    cookiecutter(
        str(worker_template()),
        no_input=True,
        output_dir=str(out),
        extra_context={"worker_name": "bench-echo"},
    )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    runs = parser.parse_args().runs
    template = str(worker_template())
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        new_worker_argv = [
            sys.executable,
            "-c",
            CRANK,
            "new-worker",
            "bench-echo",
            "--no-input",
            "--output-dir",
            str(out),
        ]
        cookiecutter_argv = [
            sys.executable,
            "-m",
            "cookiecutter",
            template,
            "--no-input",
            "--output-dir",
            str(out),
            "worker_name=bench-echo",
        ]
        cases = {
            "crank --version (process)": lambda: timed(
                [sys.executable, "-c", CRANK, "--version"], out, "crank --version (process)"
            ),
            "crank new-worker (process)": lambda: timed(
                new_worker_argv, out, "crank new-worker (process)"
            ),
            "cookiecutter (process)": lambda: timed(
                cookiecutter_argv, out, "cookiecutter (process)"
            ),
            "new_worker() in-process": lambda: in_process_new_worker(out),
            "cookiecutter() in-process": lambda: in_process_cookiecutter(out),
        }
        results = {}
        for name, case in cases.items():
            case()  # warm the file cache and the import cache
            results[name] = statistics.median(case() for _ in range(runs))
    crank_s = results["crank new-worker (process)"]
    cc_s = results["cookiecutter (process)"]
    load = os.getloadavg()[0]
    print(
        f"scaffold benchmark, median of {runs} runs (python {sys.version.split()[0]}, "
        f"{os.cpu_count()} cpus, load average {load:.1f})"
    )
    print(f"  {'case':<28} {'wall':>8}    {'cpu':>8}")
    for name, seconds in results.items():
        cpu = f"{statistics.median(CPU[name]) * 1000:8.0f} ms" if name in CPU else ""
        print(f"  {name:<28} {seconds * 1000:8.0f} ms {cpu}")
    print(
        f"  ratio new-worker / cookiecutter: {crank_s / cc_s:.2f}x "
        f"(goal <= 1.2x; absolute goal <= 1 s: {'met' if crank_s <= 1 else 'missed'})"
    )


if __name__ == "__main__":
    main()
