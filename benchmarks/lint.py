"""Cold start of `crank lint` next to check-jsonschema, and of `crank --help` next to Python.

    python benchmarks/lint.py [--runs N]

Each command runs N times in a fresh process (cold: nothing cached in-process);
the table shows the median wall time. Both validators check the same file
against the same schema (`crank schema` output); crank lint also runs its lint
rules. Goals: crank lint <= 0.5x check-jsonschema, crank --help <= 3x python -c pass.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

from gen_docs import EXAMPLE  # noqa: E402  (the documented full manifest)

#: As an installed package runs: with its bytecode cached. (Development shells often
#: set PYTHONDONTWRITEBYTECODE, which makes an editable install recompile every module
#: on every start while site-packages tools like check-jsonschema keep their .pyc.)
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def wall_times(
    commands: dict[str, list[str]], runs: int, cwd: Path
) -> dict[str, tuple[float, float, int]]:
    """(median, minimum, last exit status) per command over ``runs`` fresh processes.

    The commands take turns, so a change in machine load hits all of them alike.
    """
    times: dict[str, list[float]] = {name: [] for name in commands}
    codes: dict[str, int] = {}
    for _ in range(runs):
        for name, argv in commands.items():
            start = time.perf_counter()
            codes[name] = subprocess.run(
                argv, cwd=cwd, capture_output=True, check=False, env=ENV
            ).returncode
            times[name].append(time.perf_counter() - start)
    return {n: (statistics.median(t), min(t), codes[n]) for n, t in times.items()}


def _alias_bomb() -> bytes:
    lines = ['a: &a ["x","x","x","x","x","x","x","x","x"]']
    for i in range(8):
        prev, cur = chr(97 + i), chr(98 + i)
        lines.append(f"{cur}: &{cur} [" + ",".join([f"*{prev}"] * 9) + "]")
    return ("\n".join(lines) + "\n").encode()


#: Hostile or broken files the loader must refuse quickly, with bounded memory.
BAD_FILES: dict[str, bytes] = {
    "alias bomb (9^9 nodes)": _alias_bomb(),
    "50 MB of YAML": b"a: [" + b"1," * (25 * 1024 * 1024) + b"1]\n",
    "binary data": b"\x89PNG\r\n\x1a\n\x00" * 1000,
    "invalid UTF-8": b"name: caf\xe9\n" * 1000,
    "duplicate keys": b"a: 1\n" * 2,
    "tabs": b"a:\n\tb: 1\n",
    "not a mapping": b"- 1\n" * 10000,
    "python tag": b"a: !!python/object/apply:os.system [echo]\n",
    "deep nesting": b"a: " + b"[" * 5000 + b"]" * 5000,
    "recursive alias": b"a: &a [1, *a]\n",
    "empty": b"",
}


def loader_limits() -> None:
    """In-process: time and peak memory until each bad file is refused."""
    import tracemalloc

    from crank.errors import ManifestError
    from crank.manifest.loader import load_document

    print(f"\n{'bad file'.ljust(24)}  refused in (s)  peak memory (MiB)  error")
    with tempfile.TemporaryDirectory() as tmp:
        for name, content in BAD_FILES.items():
            path = Path(tmp) / "crank.yaml"
            path.write_bytes(content)
            tracemalloc.start()
            start = time.perf_counter()
            try:
                load_document(path)
                error = "ACCEPTED"
            except ManifestError as exc:
                error = exc.findings[0].message if exc.findings else exc.message
            elapsed = time.perf_counter() - start
            peak = tracemalloc.get_traced_memory()[1] / 2**20
            tracemalloc.stop()
            print(f"{name.ljust(24)}  {elapsed:14.3f}  {peak:17.1f}  {error[:60]}")


def _script(name: str) -> str | None:
    """The console script installed next to this Python (not a pyenv/asdf shim,
    whose own start-up would be added to both sides of the comparison)."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else shutil.which(name)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    crank = _script("crank")
    checker = _script("check-jsonschema")
    if crank is None or checker is None:
        print("needs `crank` and `check-jsonschema` on PATH (pip install -e '.[bench]')")
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        # the documented example, with an entrypoint that is not installed here, so
        # the run does not depend on which worker packages happen to be installed
        text = EXAMPLE.replace("crank_email_classifier.worker", "bench_not_installed.worker")
        text = text.replace("email.", "bench.")  # ids no installed worker claims
        (work / "one.yaml").write_text(text, encoding="utf-8")
        schema = subprocess.run([crank, "schema"], capture_output=True, text=True, check=True)
        (work / "schema.json").write_text(schema.stdout, encoding="utf-8")
        json.loads(schema.stdout)

        rows = [
            ("crank lint one.yaml", [crank, "lint", "one.yaml"]),
            (
                "check-jsonschema --schemafile schema.json one.yaml",
                [checker, "--schemafile", "schema.json", "one.yaml"],
            ),
            ("crank --help", [crank, "--help"]),
            ("python -c pass", [sys.executable, "-c", "pass"]),
        ]
        for _, argv in rows:  # warm the OS file cache and write bytecode once
            subprocess.run(argv, cwd=work, capture_output=True, check=False, env=ENV)
        results = wall_times(dict(rows), args.runs, work)

    width = max(len(n) for n in results)
    print(f"{'command'.ljust(width)}  median (s)  min (s)  exit")
    for name, (median, fastest, code) in results.items():
        print(f"{name.ljust(width)}  {median:10.3f}  {fastest:7.3f}  {code:4d}")
    for label, a, b, goal in (
        ("crank lint / check-jsonschema", "crank lint one.yaml", rows[1][0], "<= 0.5x"),
        ("crank --help / python -c pass", "crank --help", "python -c pass", "<= 3x"),
    ):
        by_median = results[a][0] / results[b][0]
        by_min = results[a][1] / results[b][1]
        print(f"{label} = {by_median:.2f}x by median, {by_min:.2f}x by min (goal {goal})")
    loader_limits()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"runs per command: {args.runs}, python {sys.version.split()[0]}, load {load:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
