"""`crank new-worker` against raw `cookiecutter` on the same template.

Both produce the same project (cookiecutter's post-generation hook renders the
deployment artifacts with crank, as `crank new-worker` does in-process). Timed
as users run them: a fresh process each time, median of N runs, plus the
in-process cost of each. Goal: `crank new-worker` <= 1 s and <= 1.2x cookiecutter.

    python benchmarks/scaffold.py [--runs 7]
"""

from __future__ import annotations

import argparse
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


def timed(argv: list[str], out: Path) -> float:
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    start = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True)
    return time.perf_counter() - start


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
        cases = {
            "crank new-worker (process)": lambda: timed(
                [
                    sys.executable,
                    "-c",
                    CRANK,
                    "new-worker",
                    "bench-echo",
                    "--no-input",
                    "--output-dir",
                    str(out),
                ],
                out,
            ),
            "cookiecutter (process)": lambda: timed(
                [
                    sys.executable,
                    "-m",
                    "cookiecutter",
                    template,
                    "--no-input",
                    "--output-dir",
                    str(out),
                    "worker_name=bench-echo",
                ],
                out,
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
    print(f"scaffold benchmark, median of {runs} runs (python {sys.version.split()[0]})")
    for name, seconds in results.items():
        print(f"  {name:<28} {seconds * 1000:8.0f} ms")
    print(
        f"  ratio new-worker / cookiecutter: {crank_s / cc_s:.2f}x "
        f"(goal <= 1.2x; absolute goal <= 1 s: {'met' if crank_s <= 1 else 'missed'})"
    )


if __name__ == "__main__":
    main()
