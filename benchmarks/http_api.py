"""The HTTP front door side by side: bare Starlette, LitServe, BentoML and ``crank run``.

    python benchmarks/http_api.py            # sets up the peers' environment, measures all

Every server answers the same echo contract (``POST /v1/capabilities/demo.echo`` with
``{"text": "hello world"}`` -> ``{"text": ...}``) on loopback, measured by ``wrk``
(a C load generator: a Python client would be the bottleneck) with one thread, at 1
and at 32 connections, after a warm-up:

* bare Starlette on uvicorn, one process (the limit: an echo with no queue at all);
* LitServe and BentoML, each with 2 workers, installed in their own virtual
  environment (``--peers-venv``, created on first use with ``pip install litserve
  bentoml``) so their pins never meet crank's; LitServe runs, by its default, one
  HTTP server process per inference worker (``num_api_servers``: 2 here), so its
  like-for-like crank row is the one with ``--http-processes 2``;
* ``crank run`` with 2 worker processes on SQLite and on a private redis-server: the
  synchronous call, and ``POST /v1/tasks`` (202, the task queued);
* the same SQLite synchronous call with crank's default access log line, for its cost;
* both brokers again with ``--http-processes 2`` (two processes serving the port).

Every server logs the way the peers are run here: no line per request (uvicorn's
``--no-access-log`` for Starlette, LitServe's ``log_level="warning"``, and for
crank ``CRANK_ACCESS_LOG=off``), warnings and errors as usual. The one row with
``(access log on)`` is crank's default.
* then ``benchmarks/client.py``: the Python client's round trip against Celery's
  ``delay().get()`` on one Redis (needs the ``bench`` extra; ``--skip-client``).

For crank it also reads the CPU time the server process and its workers spent per
request (from /proc), which a busy machine disturbs less than wall time.

The load average is printed at the start and the end; when the machine is busy the
numbers are printed but the ratios to the goals are withheld (``machine_load.py``).
Prints Markdown for ``RESULTS.md``.
"""

from __future__ import annotations

import sys
from pathlib import Path

# benchmarks/queue.py would shadow the standard library's ``queue``: this folder goes
# to the end of the import path, not the front.
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    sys.path.append(sys.path.pop(0))

import argparse
import contextlib
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import textwrap
import time
import urllib.request
from dataclasses import dataclass
from typing import TYPE_CHECKING

from machine_load import load_now, verdict
from process_groups import stop_group

if TYPE_CHECKING:
    from collections.abc import Iterator

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
WORKERS = REPO / "tests" / "fixtures" / "http_workers"
CRANK_MAIN = "import sys; from crank.cli import main; sys.exit(main())"
ECHO_PATH = "/v1/capabilities/demo.echo"
ECHO_BODY = '{"text": "hello world"}'
SUBMIT_BODY = '{"capability": "demo.echo", "input": {"text": "hello world"}}'
CONNECTIONS = (1, 32)
DEFAULT_PEERS_VENV = Path.home() / ".cache" / "crank-bench" / "http-peers"

STARLETTE_APP = """
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route


async def echo(request):
    body = await request.json()
    return JSONResponse({"text": body["text"]})


app = Starlette(routes=[Route("/v1/capabilities/demo.echo", echo, methods=["POST"])])
"""

LITSERVE_APP = """
import sys

import litserve as ls


class Echo(ls.LitAPI):
    def setup(self, device):
        pass

    def decode_request(self, request):
        return request["text"]

    def predict(self, text):
        return text

    def encode_response(self, text):
        return {"text": text}


if __name__ == "__main__":
    api = Echo(api_path="/v1/capabilities/demo.echo")
    server = ls.LitServer(api, accelerator="cpu", workers_per_device=2)
    server.run(host="127.0.0.1", port=int(sys.argv[1]), generate_client_file=False,
               log_level="warning")
"""

BENTOML_APP = """
import bentoml


@bentoml.service(workers=2)
class Echo:
    @bentoml.api(route="/v1/capabilities/demo.echo")
    def echo(self, text: str) -> dict:
        return {"text": text}
"""


@dataclass(frozen=True)
class Run:
    """What one wrk run measured."""

    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    #: CPU ms per request of the server process and of its children (crank only).
    cpu_server_ms: float | None = None
    cpu_workers_ms: float | None = None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_up(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 180.0) -> None:
    """Until ``url`` answers at all (any HTTP status), or the process died."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode} before answering")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout_s:g} s")


@contextlib.contextmanager
def running(argv: list[str], *, cwd: Path, env: dict[str, str], probe: str) -> Iterator[None]:
    """The server of ``argv`` up for the block; afterwards, its whole process group gone.

    LitServe's inference workers outlive their parent's SIGTERM and spin at most of a
    core each: left running they would take the CPU of every server measured after
    them. The group is SIGKILLed once its leader is gone and waited for, so each
    server is measured on a machine with nothing of the previous one left.
    """
    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # the server's own workers are stopped with it
    )
    try:
        wait_until_up(probe, proc)
        yield
    finally:
        stop_group(proc, grace_s=60)


def _ms(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[unit]


def wrk(url: str, body: str, connections: int, seconds: float, workdir: Path) -> Run:
    script = workdir / f"post-{abs(hash(body))}.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = '{body}'\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
    )
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--latency", "-s", str(script),
         url],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = (int(bad.group(1)) if bad else 0) + (sum(int(g) for g in sock.groups()) if sock else 0)
    return Run(rps, p50, p99, errors)


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


HTTP_PROCESS = b"crank.runtime.http_process"


def cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
    return found


def measure(
    url: str, body: str, workdir: Path, seconds: float, server_pid: int | None = None
) -> dict[int, Run]:
    """Warm up, then one wrk run per connection count."""
    wrk(url, body, 32, 2, workdir)
    runs: dict[int, Run] = {}
    for connections in CONNECTIONS:
        if server_pid is None:
            runs[connections] = wrk(url, body, connections, seconds, workdir)
            continue
        # the server: crank run's process and its HTTP processes (``--http-processes``)
        kids = children(server_pid)
        servers = [server_pid, *(k for k in kids if HTTP_PROCESS in cmdline(k))]
        kids = [k for k in kids if k not in servers]
        server0, kids0 = sum(map(cpu_seconds, servers)), sum(map(cpu_seconds, kids))
        run = wrk(url, body, connections, seconds, workdir)
        requests = max(1.0, run.rps * seconds)
        server_ms = 1000 * (sum(map(cpu_seconds, servers)) - server0) / requests
        kids_ms = 1000 * (sum(map(cpu_seconds, kids)) - kids0) / requests
        runs[connections] = Run(run.rps, run.p50_ms, run.p99_ms, run.errors, server_ms, kids_ms)
    return runs


# -- the servers ------------------------------------------------------------------------


def ensure_peers_venv(venv: Path) -> Path | None:
    """The peers' interpreter, installing LitServe and BentoML on first use (None: failed)."""
    python = venv / "bin" / "python"
    check = [str(python), "-c", "import litserve, bentoml"]
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return python
    print(f"setting up {venv} (pip install litserve bentoml)...", file=sys.stderr)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "litserve", "bentoml", "uvloop",
             "httptools"],
            check=True,
        )  # fmt: skip
    except (subprocess.CalledProcessError, OSError) as exc:
        print(f"could not install the peers ({exc}); measuring without them", file=sys.stderr)
        return None
    return python


def peer_versions(python: Path) -> str:
    out = subprocess.run(
        [str(python), "-c", "import litserve, bentoml; print(litserve.__version__, "
         "bentoml.__version__)"],
        capture_output=True, text=True,
    ).stdout.split()  # fmt: skip
    return f"LitServe {out[0]}, BentoML {out[1]}" if len(out) == 2 else "versions unknown"


def bench_starlette(workdir: Path, seconds: float) -> dict[int, Run]:
    (workdir / "bare_starlette.py").write_text(STARLETTE_APP)
    port = free_port()
    argv = [sys.executable, "-m", "uvicorn", "bare_starlette:app", "--port", str(port),
            "--no-access-log", "--log-level", "warning"]  # fmt: skip
    url = f"http://127.0.0.1:{port}{ECHO_PATH}"
    with running(argv, cwd=workdir, env=dict(os.environ), probe=url):
        return measure(url, ECHO_BODY, workdir, seconds)


def bench_litserve(python: Path, workdir: Path, seconds: float) -> dict[int, Run]:
    (workdir / "litserve_echo.py").write_text(textwrap.dedent(LITSERVE_APP))
    port = free_port()
    url = f"http://127.0.0.1:{port}{ECHO_PATH}"
    env = {**os.environ, "LITSERVE_DISABLE_TELEMETRY": "1"}
    argv = [str(python), "litserve_echo.py", str(port)]
    with running(argv, cwd=workdir, env=env, probe=f"http://127.0.0.1:{port}/health"):
        return measure(url, ECHO_BODY, workdir, seconds)


def bench_bentoml(python: Path, workdir: Path, seconds: float) -> dict[int, Run]:
    (workdir / "bentoml_echo.py").write_text(BENTOML_APP)
    port = free_port()
    url = f"http://127.0.0.1:{port}{ECHO_PATH}"
    env = {
        **os.environ,
        "BENTOML_HOME": str(workdir / "bentoml-home"),
        "BENTOML_DO_NOT_TRACK": "true",
    }
    bentoml = python.parent / "bentoml"
    argv = [str(bentoml), "serve", "bentoml_echo:Echo", "--host", "127.0.0.1", "--port",
            str(port)]  # fmt: skip
    with running(argv, cwd=workdir, env=env, probe=f"http://127.0.0.1:{port}/readyz"):
        return measure(url, ECHO_BODY, workdir, seconds)


def bench_crank(
    broker: str,
    workdir: Path,
    seconds: float,
    *,
    access_log: str = "off",
    submits: bool = True,
    http_processes: int = 1,
) -> dict[str, dict[int, Run]]:
    port = free_port()
    env = {**os.environ, "CRANK_MAX_INFLIGHT": "256", "CRANK_MAX_PENDING": "10000000"}
    env["CRANK_ACCESS_LOG"] = access_log
    argv = [sys.executable, "-c", CRANK_MAIN, "run", "--port", str(port),
            "--worker", str(WORKERS), "--broker", broker,
            "--min-workers", "2", "--max-workers", "2",
            "--http-processes", str(http_processes)]  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        argv, cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_until_up(f"{base}/health", proc)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # both workers up
            with contextlib.suppress(OSError), urllib.request.urlopen(f"{base}/ready") as r:
                if r.status == 200:
                    break
            time.sleep(0.2)
        runs = {"sync call": measure(base + ECHO_PATH, ECHO_BODY, workdir, seconds, proc.pid)}
        if submits:
            runs["POST /v1/tasks"] = measure(
                base + "/v1/tasks", SUBMIT_BODY, workdir, seconds, proc.pid
            )
        return runs
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)


@contextlib.contextmanager
def redis_server(workdir: Path) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(workdir)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


# -- the report --------------------------------------------------------------------------


def row(name: str, runs: dict[int, Run]) -> str:
    many, one = runs[32], runs[1]
    cpu = "-"
    if many.cpu_server_ms is not None:
        cpu = f"{many.cpu_server_ms:.2f} + {many.cpu_workers_ms:.2f}"
    errors = many.errors + one.errors
    return (
        f"| {name} | {many.rps:,.0f} | {many.p50_ms:.2f} / {many.p99_ms:.2f} | "
        f"{one.p50_ms:.2f} / {one.p99_ms:.2f} | {one.rps:,.0f} | {cpu} | {errors} |"
    )


def goals(table: dict[str, dict[int, Run]]) -> list[str]:
    lines = []
    limit = table["bare Starlette (1 process)"][32].rps
    peers = [
        table[n][32].rps for n in ("LitServe (2 workers)", "BentoML (2 workers)") if n in table
    ]
    best_peer = max(peers) if peers else None
    for broker in (
        "sqlite", "redis", "sqlite --http-processes 2", "redis --http-processes 2"
    ):  # fmt: skip
        sync = table.get(f"crank run {broker}, sync call")
        submit = table.get(f"crank run {broker}, POST /v1/tasks")
        if sync is None or submit is None:
            continue
        rps = sync[32].rps
        if best_peer is not None:
            ratio = rps / best_peer
            lines.append(
                f"- {broker} sync call at 32 connections = {ratio:.2f}x the faster peer "
                f"(goal >= 2x: {'met' if ratio >= 2 else 'MISSED'})"
            )
        share = rps / limit
        lines.append(
            f"- {broker} sync call at 32 connections = {100 * share:.0f} % of bare Starlette "
            f"(goal >= 50 %: {'met' if share >= 0.5 else 'MISSED'})"
        )
        p50 = sync[1].p50_ms
        lines.append(
            f"- {broker} sync call at 1 connection p50 = {p50:.2f} ms "
            f"(goal <= 0.6 ms: {'met' if p50 <= 0.6 else 'MISSED'})"
        )
        share = submit[32].rps / limit
        lines.append(
            f"- {broker} POST /v1/tasks at 32 connections = {100 * share:.0f} % of bare "
            f"Starlette (goal >= 70 %: {'met' if share >= 0.7 else 'MISSED'})"
        )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each wrk run")
    parser.add_argument("--peers-venv", type=Path, default=DEFAULT_PEERS_VENV)
    parser.add_argument("--skip-peers", action="store_true", help="no LitServe, no BentoML")
    parser.add_argument("--skip-client", action="store_true", help="no benchmarks/client.py")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed (apt-get install -y wrk)", file=sys.stderr)
        return 2
    peers_python = None if args.skip_peers else ensure_peers_venv(args.peers_venv)

    before = load_now()
    table: dict[str, dict[int, Run]] = {}
    with tempfile.TemporaryDirectory(prefix="crank-http-bench-") as tmp:
        workdir = Path(tmp)
        table["bare Starlette (1 process)"] = bench_starlette(workdir, args.seconds)
        if peers_python is not None:
            table["LitServe (2 workers)"] = bench_litserve(peers_python, workdir, args.seconds)
            table["BentoML (2 workers)"] = bench_bentoml(peers_python, workdir, args.seconds)
        for name, runs in bench_crank(
            f"sqlite:///{workdir / 'queue.db'}", workdir, args.seconds
        ).items():
            table[f"crank run sqlite, {name}"] = runs
        default_log = bench_crank(
            f"sqlite:///{workdir / 'logged.db'}", workdir, args.seconds, access_log="on",
            submits=False,
        )  # fmt: skip
        table["crank run sqlite, sync call (access log on)"] = default_log["sync call"]
        for name, runs in bench_crank(
            f"sqlite:///{workdir / 'two.db'}", workdir, args.seconds, http_processes=2
        ).items():
            table[f"crank run sqlite --http-processes 2, {name}"] = runs
        if shutil.which("redis-server"):
            with redis_server(workdir) as url:
                for name, runs in bench_crank(url, workdir, args.seconds).items():
                    table[f"crank run redis, {name}"] = runs
                for name, runs in bench_crank(url, workdir, args.seconds, http_processes=2).items():
                    table[f"crank run redis --http-processes 2, {name}"] = runs
    after = load_now()

    versions = "" if peers_python is None else f", {peer_versions(peers_python)}"
    print(
        f"HTTP echo, wrk 1 thread, {args.seconds:g} s per run (python "
        f"{platform.python_version()}{versions}; load {before} at the start, {after} at the end)"
    )
    print()
    print("| server | req/s at 32 | p50 / p99 ms at 32 | p50 / p99 ms at 1 | req/s at 1 | "
          "CPU ms/req at 32 (server + workers) | errors |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, runs in table.items():
        print(row(name, runs))
    print()
    why_not = verdict(before, after)
    if why_not:
        print(f"Goals: not reported: {why_not}")
    else:
        print("Goals:")
        print("\n".join(goals(table)))
    sys.stdout.flush()
    if not args.skip_client:
        print()
        subprocess.run([sys.executable, str(HERE / "client.py")], check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
