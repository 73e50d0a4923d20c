"""What the crank pytest plugin costs a test suite that does not use it much.

Generates a 2,000-test suite in a temporary folder (plain tests, parametrized
tests, 1 % calling ``ensure_dependency`` for an available and a missing
dependency) and runs it with the plugin and with ``-p no:crank``, alternating,
several times. Prints wall time, CPU time and pytest's own session time of each
side: medians and minimums (on a busy machine the minimum is the least disturbed).

    python benchmarks/pytest_overhead.py [--runs 5] [--tests 2000]

``ensure_dependency`` skips without the plugin too, so both sides skip the same
tests and run the same bodies: the difference is the plugin's own cost (its
import, header, per-test hooks and summary).
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

PLAIN = """
def test_plain_{i}():
    assert sum(range({i} % 50)) >= 0
"""

PARAMETRIZED = """
@pytest.mark.parametrize("n", range(10))
def test_param_{i}(n):
    assert n * n >= 0
"""

DEPENDENCY = """
def test_missing_{i}():
    ensure_dependency("exe:crank-bench-missing-tool")

def test_ensure_{i}():
    ensure_dependency("numpy")
"""


def generate_suite(folder: Path, total: int) -> int:
    """Files of 100 tests each; about 1 % use crank dependency helpers."""
    count = 0
    index = 0
    while count < total:
        parts = ["import pytest", "from crank.testing import ensure_dependency"]
        in_file = 0
        while in_file < 100 and count < total:
            if index % 50 == 0 and total - count >= 2:
                parts.append(DEPENDENCY.format(i=index))
                in_file += 2
                count += 2
            elif index % 7 == 0 and total - count >= 10:
                parts.append(PARAMETRIZED.format(i=index))
                in_file += 10
                count += 10
            else:
                parts.append(PLAIN.format(i=index))
                in_file += 1
                count += 1
            index += 1
        (folder / f"test_generated_{index:05d}.py").write_text("\n".join(parts))
    # an ini file of its own makes the temporary folder the rootdir
    (folder / "pytest.ini").write_text("[pytest]\n")
    return count


@dataclass(frozen=True)
class Run:
    wall_s: float
    cpu_s: float  # user + system time of the pytest process: robust against a busy machine
    session_s: float  # what pytest reports ("in 4.78s"): collection and tests, no startup
    summary: str


def run_suite(folder: Path, extra: list[str], *, isolated: bool = False) -> Run:
    env = {**os.environ, "CI": "", "CRANK_REQUIRE": ""}
    if isolated:
        # no entry-point plugin at all; crank is then loaded explicitly (or not)
        env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *extra]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=folder, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(
            f"suite failed ({' '.join(extra)}):\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}"
        )
    last = [line for line in proc.stdout.splitlines() if line.strip()][-1]
    match = re.search(r"in ([0-9.]+)s", last)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Run(wall, cpu, float(match.group(1)) if match else float("nan"), last)


def _row(label: str, a: float, b: float) -> str:
    return f"{label:>14} {a:>12.3f} {b:>14.3f} {100 * (a - b) / b:>8.1f}%"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tests", type=int, default=2000)
    parser.add_argument(
        "--isolated",
        action="store_true",
        help="disable every other pytest plugin: compare '-p crank.testing.plugin' with nothing",
    )
    args = parser.parse_args()
    on, off = (["-p", "crank.testing.plugin"], []) if args.isolated else ([], ["-p", "no:crank"])

    with tempfile.TemporaryDirectory(prefix="crank-bench-") as tmp:
        folder = Path(tmp)
        total = generate_suite(folder, args.tests)
        print(f"generated {total} tests in {folder}")
        run_suite(folder, on, isolated=args.isolated)  # warm the file system and bytecode caches
        with_plugin: list[Run] = []
        without_plugin: list[Run] = []
        for _ in range(args.runs):
            with_plugin.append(run_suite(folder, on, isolated=args.isolated))
            without_plugin.append(run_suite(folder, off, isolated=args.isolated))

    mode = "isolated (PYTEST_DISABLE_PLUGIN_AUTOLOAD=1)" if args.isolated else "all plugins"
    print(f"{args.runs} alternating runs, {mode}, load average {os.getloadavg()[0]:.1f}")
    print(f"{'':>14} {'with crank':>12} {'without':>14} {'overhead':>9}")
    for n, (a, b) in enumerate(zip(with_plugin, without_plugin, strict=True), 1):
        print(_row(f"run {n} cpu s", a.cpu_s, b.cpu_s))
    for metric in ("wall_s", "cpu_s", "session_s"):
        a_values = [getattr(r, metric) for r in with_plugin]
        b_values = [getattr(r, metric) for r in without_plugin]
        print(_row(f"median {metric}", statistics.median(a_values), statistics.median(b_values)))
        print(_row(f"min {metric}", min(a_values), min(b_values)))
    print(f"with crank:  {with_plugin[-1].summary}")
    print(f"without:     {without_plugin[-1].summary}")


if __name__ == "__main__":
    main()
