"""Batching and per-process concurrency, measured: crank against LitServe and bare onnxruntime.

    python benchmarks/batching.py        # builds the model, sets up LitServe, measures all

The model is the one where batching matters: an MLP with two hidden layers of 2,048
trained on scikit-learn's digits (3 iterations: its accuracy is beside the point; the
data set ships with scikit-learn, nothing is downloaded), written as standard ONNX
(Gemm/Relu/Softmax/ArgMax) by the image classifier's own writer; onnxruntime runs it
on one thread everywhere. Each request or task is one 8x8 image.

* bare onnxruntime in-process at batch 1 and 64 (the limit);
* over HTTP, 64 connections of ``wrk`` (a C load generator) each sending one image at
  a time for ``--seconds``: ``crank run`` with 2 worker processes on SQLite, with
  ``batching: {max_batch_size: 64, max_latency_ms: 5}`` and without; LitServe with 2
  workers, with ``max_batch_size=64`` and a 5 ms batch timeout and without (LitServe
  lives in its own virtual environment, ``--venv``, created on first use; by its
  default it serves HTTP from one process per inference worker, 2 here, as
  ``crank run --http-processes 2`` does);
* through the queue: ``--tasks`` single-image tasks queued in SQLite (one
  transaction), then drained by 2 warm worker processes with and without batching;
  timed from the commit to the last ack, and once more with the submit included;
  ``--rounds`` pairs, alternating, and the median of the pairs' ratios;
* concurrency: 1,000 tasks of an async handler awaiting 100 ms, ``concurrency: 50``,
  2 worker processes: seconds from the last submit until the last task is done.

Neither server writes a line per request, as in ``http_api.py``: LitServe runs at
``log_level="warning"`` (no uvicorn access log) and ``crank run`` with
``CRANK_ACCESS_LOG=off``; warnings and errors are logged as usual.

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
sys.path.append(str(Path(__file__).resolve().parent))

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import subprocess
import tempfile
import textwrap
import time
import warnings
from dataclasses import dataclass
from statistics import median
from typing import TYPE_CHECKING, Any

from http_api import Run, free_port, running, wrk
from machine_load import load_now, verdict

from crank.runtime.brokers import open_broker
from crank.runtime.brokers.contract import TaskSpec

if TYPE_CHECKING:
    from collections.abc import Iterator

HERE = Path(__file__).resolve().parent
BENCH_WORKERS = HERE / "batching_workers"
HIDDEN = (2048, 2048)
BATCH = 64
LATENCY_MS = 5
CONNECTIONS = 64
WORKERS = 2

LITSERVE_APP = """
import sys

import litserve as ls
import numpy as np
import onnxruntime as ort

MODEL, PORT, BATCH = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])  # spawned workers too


class Digits(ls.LitAPI):
    def setup(self, device):
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(MODEL, options, providers=["CPUExecutionProvider"])

    def decode_request(self, request):
        return np.asarray(request["image"], dtype=np.float32)

    def batch(self, inputs):
        return np.stack(inputs)

    def predict(self, pixels):
        one = pixels.ndim == 1
        [labels] = self.session.run(["labels"], {"pixels": pixels[None] if one else pixels})
        return labels[0] if one else labels

    def unbatch(self, output):
        return list(output)

    def encode_response(self, output):
        return {"label": int(output)}


if __name__ == "__main__":  # LitServe spawns its workers: they import this file
    options = {"max_batch_size": BATCH, "batch_timeout": 0.005} if BATCH > 1 else {}
    try:
        api = Digits(**options)  # newer LitServe: batching is the API's
        server = ls.LitServer(api, accelerator="cpu", workers_per_device=2)
    except TypeError:
        server = ls.LitServer(Digits(), accelerator="cpu", workers_per_device=2, **options)
    server.run(port=PORT, generate_client_file=False, log_level="warning")
"""


# -- the model ------------------------------------------------------------------------


def build_model(directory: Path) -> Path:
    """The 2x2,048 MLP as ONNX, trained for 3 iterations (cached in ``directory``)."""
    import numpy as np
    from crank_image_classifier.model import MAX_GREY, digits_split, mlp_onnx
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    path = directory / "digits-mlp-2048x2048-3it.onnx"
    if path.is_file():
        return path
    split = digits_split()
    classifier = MLPClassifier(hidden_layer_sizes=HIDDEN, max_iter=3, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        classifier.fit(split.x_train / MAX_GREY, split.y_train)
    weights = [np.asarray(w, dtype=np.float32) for w in classifier.coefs_]
    weights[0] = weights[0] / np.float32(MAX_GREY)
    biases = [np.asarray(b, dtype=np.float32) for b in classifier.intercepts_]
    directory.mkdir(parents=True, exist_ok=True)
    path.write_bytes(mlp_onnx(weights, biases))
    return path


def images(count: int) -> list[list[float]]:
    from crank_image_classifier.model import held_out_digits

    pool, _ = held_out_digits()
    return [pool[i % len(pool)].tolist() for i in range(count)]


def bare_onnxruntime(model: Path, seconds: float) -> dict[int, float]:
    """Images per second in-process at batch 1 and 64, one thread."""
    import numpy as np
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    pixels = np.asarray(images(BATCH), dtype=np.float32)
    rates = {}
    for size in (1, BATCH):
        batch = pixels[:size]
        done, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            session.run(["labels"], {"pixels": batch})
            done += size
        rates[size] = done / (time.perf_counter() - started)
    return rates


# -- crank ------------------------------------------------------------------------------


def manifest(directory: Path, *, batched: bool) -> Path:
    """A worker folder serving ``bench.digit`` (with or without batching)."""
    folder = directory / ("batched" if batched else "single")
    folder.mkdir(parents=True, exist_ok=True)
    digit = {
        "id": "bench.digit",
        "version": "1.0.0",
        "description": "The digit one 8x8 image shows.",
        "input": {
            "type": "object",
            "required": ["image"],
            "properties": {"image": {"type": "array", "minItems": 64, "maxItems": 64}},
        },
        "output": {
            "type": "object",
            "required": ["label"],
            "properties": {"label": {"type": "integer"}},
        },
    }
    capabilities = [digit]
    if batched:
        digit["batching"] = {"max_batch_size": BATCH, "max_latency_ms": LATENCY_MS}
        capabilities.append(
            {
                "id": "bench.await",
                "version": "1.0.0",
                "description": "Awaits a stand-in for a slow service.",
                "input": {
                    "type": "object",
                    "required": ["seconds"],
                    "properties": {"seconds": {"type": "number"}},
                },
                "output": {"type": "object"},
                "concurrency": 50,
            }
        )
    doc = {
        "apiVersion": "crank.dev/v1",
        "kind": "Worker",
        "metadata": {
            "name": "bench-batched" if batched else "bench-single",
            "version": "1.0.0",
            "description": "benchmarks/batching.py",
        },
        "worker": {
            "entrypoint": "crank_batching_bench:" + ("BatchedDigits" if batched else "Digits")
        },
        "capabilities": capabilities,
    }
    (folder / "crank.yaml").write_text(json.dumps(doc, indent=1))  # JSON is YAML
    return folder / "crank.yaml"


def worker_env(model: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(BENCH_WORKERS), env.get("PYTHONPATH")) if p)
    env["CRANK_BENCH_MODEL"] = str(model)
    env["CRANK_LOG_MODE"] = "prod"
    # 64 connections, and a closing connection's request may still be counted when the
    # next run opens its own: the default in-flight limit (64) would answer 429
    env["CRANK_MAX_INFLIGHT"] = "1024"
    return env


@contextlib.contextmanager
def worker_processes(url: str, path: Path, env: dict[str, str], *, batched: bool) -> Iterator[None]:
    module = "crank.runtime.batching_loop" if batched else "crank.runtime.worker_process"
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                module,
                "--broker",
                url,
                "--manifest",
                str(path),
                "--consumer",
                f"bench-{i}",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for i in range(WORKERS)
    ]
    try:
        yield
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def wait_done(broker: Any, ids: list[str], timeout_s: float = 900.0) -> float:
    """Until every task ended; the time it happened (``time.perf_counter``).

    The poll must not take the CPU the workers drain with: ``stats()`` counts the
    pending rows (17 ms with 20,000 images queued, here), so it runs only once the
    last task submitted (claimed last: same priority, same submit) has ended; until
    then the poll reads that one row by its key (tens of microseconds).
    """
    deadline = time.monotonic() + timeout_s
    last = ids[-1]
    while time.monotonic() < deadline:
        record = broker.get(last)
        if record is None or record.status in ("succeeded", "failed", "dead", "cancelled"):
            break
        time.sleep(0.001)
    while time.monotonic() < deadline:
        stats = broker.stats()
        if not sum(stats.pending.values()) and not stats.running:
            ended = time.perf_counter()
            missing = [i for i in ids[-50:] if not (r := broker.get(i)) or r.status != "succeeded"]
            if missing:
                raise RuntimeError(f"{len(missing)} of the last tasks did not succeed")
            return ended
        time.sleep(0.002)
    raise RuntimeError("the queue did not drain")


@dataclass(frozen=True)
class Drain:
    """Tasks per second through the queue, two ways."""

    drained: float  # from a full queue (``submit_many`` committed) to the last ack
    with_submit: float  # from before ``submit_many`` (the producer's part included)


def drain(model: Path, workdir: Path, tasks: int, *, batched: bool) -> Drain:
    """``tasks`` single-image tasks queued in one transaction, drained by 2 worker processes.

    The workers are started and warm first; they cannot see the tasks until the
    submit commits, so the drain starts when ``submit_many`` returns. The rate with
    the submit included is printed too: encoding and inserting 20,000 images takes
    the producer 0.4 s here, during which the workers wait.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{workdir / ('drain-b.db' if batched else 'drain-s.db')}"
    broker = open_broker(url)
    path = manifest(workdir, batched=batched)
    pictures = images(tasks)
    try:
        with worker_processes(url, path, worker_env(model), batched=batched):
            warm = [
                r.id
                for r in broker.submit_many([TaskSpec("bench.digit", {"image": pictures[0]})] * 4)
            ]
            wait_done(broker, warm)
            specs = [TaskSpec("bench.digit", {"image": image}) for image in pictures]
            submitting = time.perf_counter()
            ids = [r.id for r in broker.submit_many(specs)]
            started = time.perf_counter()
            ended = wait_done(broker, ids)
    finally:
        broker.close()
    return Drain(drained=tasks / (ended - started), with_submit=tasks / (ended - submitting))


def drains(model: Path, workdir: Path, tasks: int, rounds: int) -> list[tuple[Drain, Drain]]:
    """``rounds`` pairs (batched, unbatched), each pair run back to back.

    Two runs of the same drain here differ by up to a half (the two vCPUs are not
    always two cores' worth), so one pair is not a result: the report takes the
    median of the pairs' ratios.
    """
    return [
        (
            drain(model, workdir / f"round-{i}", tasks, batched=True),
            drain(model, workdir / f"round-{i}", tasks, batched=False),
        )
        for i in range(rounds)
    ]


def concurrency(model: Path, workdir: Path, tasks: int = 1000) -> float:
    """Seconds from the last submit until ``tasks`` 100 ms awaits are done."""
    url = f"sqlite:///{workdir / 'await.db'}"
    broker = open_broker(url)
    path = manifest(workdir, batched=True)
    try:
        with worker_processes(url, path, worker_env(model), batched=True):
            wait_done(
                broker,
                [r.id for r in broker.submit_many([TaskSpec("bench.await", {"seconds": 0.0})] * 2)],
            )
            specs = [TaskSpec("bench.await", {"seconds": 0.1})] * tasks
            ids = [r.id for r in broker.submit_many(specs)]
            submitted = time.perf_counter()
            ended = wait_done(broker, ids)
    finally:
        broker.close()
    return ended - submitted


def http_crank(
    model: Path, workdir: Path, seconds: float, *, batched: bool, http_processes: int = 1
) -> Run:
    port = free_port()
    path = manifest(workdir, batched=batched)
    db = f"http-{'b' if batched else 's'}{http_processes}.db"
    argv = [
        sys.executable, "-m", "crank", "run", "--port", str(port), "--worker", str(path.parent),
        "--broker", f"sqlite:///{workdir / db}",
        "--min-workers", str(WORKERS), "--max-workers", str(WORKERS),
        "--http-processes", str(http_processes),
    ]  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    env = {**worker_env(model), "CRANK_ACCESS_LOG": "off"}  # as LitServe is run: no access log
    with running(argv, cwd=workdir, env=env, probe=f"{url}/ready"):
        wait_ready(f"{url}/ready")
        return wrk_digits(f"{url}/v1/capabilities/bench.digit", workdir, seconds)


def wait_ready(url: str, timeout_s: float = 180.0) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as answer:
            if answer.status == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{url} not ready")


def wrk_digits(url: str, workdir: Path, seconds: float) -> Run:
    body = json.dumps({"image": images(1)[0]}, separators=(",", ":"))
    wrk(url, body, CONNECTIONS, 2, workdir)  # warm-up
    return wrk(url, body, CONNECTIONS, seconds, workdir)


# -- LitServe ---------------------------------------------------------------------------


def ensure_venv(venv: Path) -> Path:
    python = venv / "bin" / "python"
    check = [str(python), "-c", "import litserve, onnxruntime, numpy"]
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return python
    print(f"setting up {venv} (pip install litserve onnxruntime numpy)...", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "litserve", "onnxruntime", "numpy"],
        check=True,
    )
    return python


def http_litserve(python: Path, model: Path, workdir: Path, seconds: float, *, batch: int) -> Run:
    port = free_port()
    app = workdir / "litserve_app.py"
    app.write_text(textwrap.dedent(LITSERVE_APP))
    argv = [str(python), str(app), str(model), str(port), str(batch)]
    url = f"http://127.0.0.1:{port}"
    with running(argv, cwd=workdir, env=dict(os.environ), probe=f"{url}/health"):
        wait_ready(f"{url}/health")
        return wrk_digits(f"{url}/predict", workdir, seconds)


# -- the report -------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="per wrk run")
    parser.add_argument("--tasks", type=int, default=20_000, help="tasks the queue drains")
    parser.add_argument(
        "--rounds", type=int, default=3, help="drains with and without batching, alternating"
    )
    parser.add_argument(
        "--venv",
        type=Path,
        default=Path.home() / ".cache" / "crank" / "bench-batching-venv",
        help="LitServe's own virtual environment (created on first use)",
    )
    parser.add_argument("--skip-litserve", action="store_true")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("error: wrk is not installed\n  hint: apt-get install -y wrk", file=sys.stderr)
        return 2
    before = load_now()
    with tempfile.TemporaryDirectory(prefix="crank-bench-batching-") as tmp:
        workdir = Path(tmp)
        model = build_model(Path.home() / ".cache" / "crank" / "bench-batching")
        bare = bare_onnxruntime(model, min(args.seconds, 5.0))
        http: dict[str, Run] = {
            "crank run, batching (64, 5 ms)": http_crank(
                model, workdir, args.seconds, batched=True
            ),
            "crank run, no batching": http_crank(model, workdir, args.seconds, batched=False),
            "crank run --http-processes 2, batching (64, 5 ms)": http_crank(
                model, workdir, args.seconds, batched=True, http_processes=2
            ),
        }
        if not args.skip_litserve:
            python = ensure_venv(args.venv)
            http["LitServe, max_batch_size 64, 5 ms"] = http_litserve(
                python, model, workdir, args.seconds, batch=BATCH
            )
            http["LitServe, no batching"] = http_litserve(
                python, model, workdir, args.seconds, batch=1
            )
        pairs = drains(model, workdir, args.tasks, max(1, args.rounds))
        awaited = concurrency(model, workdir)
    after = load_now()

    print(f"## Batching ({platform.python_implementation()} {platform.python_version()}, "
          f"load {before} at the start, {after} at the end)\n")  # fmt: skip
    print(f"Model: MLP {HIDDEN[0]}x{HIDDEN[1]} on the digits, one onnxruntime thread; "
          f"{WORKERS} worker processes; {CONNECTIONS} wrk connections, "
          "one image per request.\n")  # fmt: skip
    print("| what | images/s | p50 / p99 ms | errors |\n|---|---:|---:|---:|")
    for size, rate in bare.items():
        print(f"| bare onnxruntime, batch {size} | {rate:,.0f} | | |")
    for name, run in http.items():
        latency = f"{run.p50_ms:.1f} / {run.p99_ms:.1f}"
        print(f"| HTTP: {name} | {run.rps:,.0f} | {latency} | {run.errors} |")
    for i, (name, how) in enumerate(
        (
            ("batching", "drained"),
            ("no batching", "drained"),
            ("batching", "with_submit"),
            ("no batching", "with_submit"),
        )
    ):
        rates = sorted(getattr(pair[i % 2], how) for pair in pairs)
        what = "queued, then drained" if how == "drained" else "submit + drain"
        spread = f" ({rates[0]:,.0f}-{rates[-1]:,.0f})" if len(rates) > 1 else ""
        print(f"| queue: {args.tasks:,} tasks {what}, {name}, median of {len(rates)} "
              f"| {median(rates):,.0f}{spread} | | |")  # fmt: skip
    drained = ", ".join(f"{b.drained / s.drained:.2f}x" for b, s in pairs)
    submitted = ", ".join(f"{b.with_submit / s.with_submit:.2f}x" for b, s in pairs)
    print(f"\nEach pair of drains, batched / unbatched, in the order run: {drained} "
          f"(submit + drain: {submitted}).")  # fmt: skip
    print(f"\nConcurrency 50, 2 processes: 1,000 tasks of a 100 ms await done "
          f"{awaited:.2f} s after the last submit (goal: within 1.5 s).\n")  # fmt: skip

    busy = verdict(before, after)
    if busy is not None:
        print(busy)
        return 0
    batched = http["crank run, batching (64, 5 ms)"]
    lit = http.get("LitServe, max_batch_size 64, 5 ms")
    if lit is not None:
        print(f"- HTTP: crank with batching / LitServe with batching: {batched.rps / lit.rps:.2f}x "
              "(goal >= 1.5x)")  # fmt: skip
    model_ms = 1000 * BATCH / bare[BATCH]
    bound = LATENCY_MS + model_ms + 5
    for name in (
        "crank run, batching (64, 5 ms)",
        "crank run --http-processes 2, batching (64, 5 ms)",
    ):
        p99 = http[name].p99_ms
        print(f"- HTTP {name}: p99 {p99:.1f} ms against max_latency_ms + one batch's model "
              f"time + 5 ms = {bound:.1f} ms ({'met' if p99 <= bound else 'MISSED'})")  # fmt: skip
    ratios = sorted(b.drained / s.drained for b, s in pairs)
    with_submit = sorted(b.with_submit / s.with_submit for b, s in pairs)
    print(f"- queue: batched drain / unbatched drain, median of {len(pairs)} pairs: "
          f"{median(ratios):.2f}x ({', '.join(f'{r:.2f}' for r in ratios)}; goal >= 4x: "
          f"{'met' if median(ratios) >= 4 else 'MISSED'}); with the submit of the "
          f"{args.tasks:,} tasks included: {median(with_submit):.2f}x")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
