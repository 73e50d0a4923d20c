"""What the crank pytest plugin costs a test suite that does not use it much.

Generates a 2,000-test suite in a temporary folder (plain tests, parametrized
tests, 1 % calling ``ensure_dependency`` for an available and a missing
dependency) and runs it with the plugin and with ``-p no:crank``, alternating,
several times. Prints wall time, CPU time and pytest's own session time of each
side: medians and minimums (on a busy machine the minimum is the least disturbed).

    python benchmarks/pytest_overhead.py [--runs 5] [--tests 2000] [--unrelated]

``ensure_dependency`` skips without the plugin too, so both sides skip the same
tests and run the same bodies: the difference is the plugin's own cost (its
import, header, per-test hooks and summary).

``--unrelated`` is a project that does not use crank at all (no manifest, no
crank import, no marker or fixture) run with ``CI=true``, like pluggy's own test
suite in an environment where crank is installed: the plugin must cost nothing
measurable and print nothing (the script counts the ``crank`` lines of a run
that shows the header and the summary).
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


def generate_suite(folder: Path, total: int, *, use_crank: bool = True) -> int:
    """Files of 100 tests each; about 1 % use crank dependency helpers (if ``use_crank``)."""
    count = 0
    index = 0
    while count < total:
        parts = ["import pytest"]
        if use_crank:
            parts.append("from crank.testing import ensure_dependency")
        in_file = 0
        while in_file < 100 and count < total:
            if use_crank and index % 50 == 0 and total - count >= 2:
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


def run_suite(folder: Path, extra: list[str], *, isolated: bool = False, ci: bool = False) -> Run:
    env = {**os.environ, "CI": "true" if ci else "", "CRANK_REQUIRE": ""}
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


def crank_lines(folder: Path, extra: list[str]) -> list[str]:
    """Lines starting with ``crank`` in a verbose-enough run (header and summary shown)."""
    env = {**os.environ, "CI": "true", "CRANK_REQUIRE": ""}
    cmd = [sys.executable, "-m", "pytest", "-rA", "-p", "no:cacheprovider", *extra]
    proc = subprocess.run(cmd, cwd=folder, env=env, capture_output=True, text=True, check=False)
    return [line for line in proc.stdout.splitlines() if line.startswith("crank")]


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
    parser.add_argument(
        "--unrelated",
        action="store_true",
        help="a suite that does not use crank, run with CI=true (pluggy's own suite, say)",
    )
    args = parser.parse_args()
    on, off = (["-p", "crank.testing.plugin"], []) if args.isolated else ([], ["-p", "no:crank"])
    ci = args.unrelated

    with tempfile.TemporaryDirectory(prefix="crank-bench-") as tmp:
        folder = Path(tmp)
        total = generate_suite(folder, args.tests, use_crank=not args.unrelated)
        print(f"generated {total} tests in {folder}")
        if args.unrelated:
            print(f"crank lines in a run with header and summary: {crank_lines(folder, on)}")
        run_suite(folder, on, isolated=args.isolated, ci=ci)  # warm the caches
        with_plugin: list[Run] = []
        without_plugin: list[Run] = []
        for _ in range(args.runs):
            with_plugin.append(run_suite(folder, on, isolated=args.isolated, ci=ci))
            without_plugin.append(run_suite(folder, off, isolated=args.isolated, ci=ci))

    mode = "isolated (PYTEST_DISABLE_PLUGIN_AUTOLOAD=1)" if args.isolated else "all plugins"
    if args.unrelated:
        mode += ", a suite that does not use crank, CI=true"
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
