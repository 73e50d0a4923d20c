"""What a worker process imports while it serves: its footprint is the whole deployment's.

A worker imports its broker, its handlers and what runs them; not the CLI (click),
the HTTP server stack, jsonschema (only to word a validation error) or rich (which
structlog would pull in for console tracebacks: about 6 MB per process). Nor, while
its handlers are all sync, asyncio (with ssl, about 10 MB), nor prometheus-client
(with the HTTP server and OpenSSL it imports) unless metrics are on, nor hashlib
(OpenSSL's libcrypto): each is imported where it is first used, and these tests fail
if one is imported at the top of a module a worker loads again.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from typing import TYPE_CHECKING, Any

import pytest

from crank import connect

from .conftest import FIXTURE_MANIFEST

if TYPE_CHECKING:
    from pathlib import Path

NOT_IN_A_WORKER = (
    "click",
    "rich",
    "pygments",
    "jsonschema",
    "starlette",
    "uvicorn",
    "httpx",
    "cookiecutter",
    "jinja2",
)
#: Imported on first use only: a worker serving sync handlers without metrics needs none.
NOT_IN_A_SYNC_WORKER = (
    "asyncio",
    "ssl",
    "hashlib",
    "prometheus_client",
    "http.server",
    "http.client",
    "urllib.request",
)


def serve_one_task(
    tmp_path: Path,
    env: dict[str, str],
    manifest: Path,
    capability: str,
    payload: dict[str, Any],
    *,
    broker_url: str | None = None,
) -> tuple[Any, set[str]]:
    """Run a real worker process until one task is done (on a SQLite queue in
    ``tmp_path`` unless ``broker_url`` names one): the task's result and every module the
    process had loaded when it exited."""
    url = broker_url or f"sqlite:///{tmp_path / 'queue.db'}"
    modules = tmp_path / "modules.json"
    # the worker's own main, and at its exit the modules it had loaded
    code = (
        "import atexit, json, runpy, sys\n"
        f"out = {str(modules)!r}\n"
        "atexit.register(lambda: open(out, 'w').write(json.dumps(sorted(sys.modules))))\n"
        "runpy.run_module('crank.runtime.worker_process', run_name='__main__')\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code,
         "--broker", url, "--manifest", str(manifest), "--consumer", "imports"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        with connect(url) as queue:
            # a task run end to end: the imports of its first task are counted too
            result = queue.submit(capability, payload).result(timeout=60)
    finally:
        proc.terminate()
        assert proc.wait(timeout=60) == 0
    return result, set(json.loads(modules.read_text()))


def without_metrics(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k != "PROMETHEUS_MULTIPROC_DIR"}


@pytest.mark.slow
def test_a_serving_worker_imports_nothing_it_does_not_use(
    tmp_path: Path, worker_env: dict[str, str]
) -> None:
    result, loaded = serve_one_task(
        tmp_path, without_metrics(worker_env), FIXTURE_MANIFEST, "fixture.echo", {"n": 1}
    )
    assert result["echo"] == {"n": 1}
    imported = {name.split(".")[0] for name in loaded}
    assert {"crank", "sqlite3", "structlog"} <= imported  # the measurement itself works
    assert sorted(imported & set(NOT_IN_A_WORKER)) == []
    assert sorted(loaded & set(NOT_IN_A_SYNC_WORKER)) == []


@pytest.mark.slow
def test_a_worker_on_redis_loads_no_redis_client_library(
    tmp_path: Path, worker_env: dict[str, str], redis_server: str
) -> None:
    """redis-py would load its asyncio client, ssl and (when installed) OpenTelemetry's
    SDK: about 15 MB more per worker process. The broker speaks to Redis itself."""
    result, loaded = serve_one_task(
        tmp_path,
        without_metrics(worker_env),
        FIXTURE_MANIFEST,
        "fixture.echo",
        {"n": 1},
        broker_url=redis_server,
    )
    assert result["echo"] == {"n": 1}
    assert "crank.runtime.brokers.redis" in loaded  # the measurement itself works
    imported = {name.split(".")[0] for name in loaded}
    assert sorted(imported & {"redis", "opentelemetry", *NOT_IN_A_WORKER}) == []
    assert sorted(loaded & set(NOT_IN_A_SYNC_WORKER)) == []


ASYNC_WORKER = """\
from __future__ import annotations

from typing import Any

# no asyncio here: the worker host must load it itself, when a coroutine comes back
from crank.worker import TaskContext, WorkerApplication, capability


class AsyncOnly(WorkerApplication):
    async def setup(self) -> None:
        self.ready = True

    @capability("probe.async_echo")
    async def echo(self, data: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        return {"text": data["text"], "set_up": self.ready}
"""

ASYNC_MANIFEST = """\
apiVersion: crank.dev/v1
kind: Worker
metadata:
  name: async-only
  version: 0.1.0
  description: An async handler in a module that does not import asyncio.
worker:
  entrypoint: async_only_worker:AsyncOnly
capabilities:
  - id: probe.async_echo
    version: 1.0.0
    input:
      type: object
      required: [text]
      properties:
        text: {type: string}
    output:
      type: object
      required: [text, set_up]
      properties:
        text: {type: string}
        set_up: {type: boolean}
    timeout_s: 30
"""


@pytest.mark.slow
def test_async_handlers_still_run_in_a_worker_that_loads_asyncio_on_first_use(
    tmp_path: Path, worker_env: dict[str, str]
) -> None:
    package = tmp_path / "async_worker"
    package.mkdir()
    (package / "async_only_worker.py").write_text(ASYNC_WORKER)
    (package / "crank.yaml").write_text(ASYNC_MANIFEST)
    env = without_metrics(worker_env)
    env["PYTHONPATH"] = f"{package}:{env['PYTHONPATH']}"
    result, loaded = serve_one_task(
        tmp_path, env, package / "crank.yaml", "probe.async_echo", {"text": "hi"}
    )
    assert result == {"text": "hi", "set_up": True}
    assert "asyncio" in loaded


@pytest.mark.slow
def test_a_worker_with_metrics_on_still_counts_its_tasks(
    tmp_path: Path, worker_env: dict[str, str]
) -> None:
    from prometheus_client import CollectorRegistry, multiprocess

    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    env = {**worker_env, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    result, loaded = serve_one_task(tmp_path, env, FIXTURE_MANIFEST, "fixture.echo", {"n": 2})
    assert result["echo"] == {"n": 2}
    # the files are written without the package (its HTTP exposition, ssl, urllib)
    assert "prometheus_client" not in loaded
    assert not {"ssl", "http.server", "urllib.request"} & loaded
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(metrics_dir))  # type: ignore[no-untyped-call]
    labels = {"capability": "fixture.echo", "status": "succeeded"}
    assert registry.get_sample_value("crank_tasks_total", labels) == 1.0


def test_structlog_async_methods_work_with_asyncio_loaded_on_first_use() -> None:
    """structlog imports asyncio for its async methods only; crank gives it a stand-in
    that imports asyncio when one of them first runs."""
    code = textwrap.dedent(
        """
        import io, json, logging, sys
        from crank.runtime.logs import configure_logging, get_logger
        assert "asyncio" not in sys.modules, "imported with crank.runtime.logs"
        out = io.StringIO()
        configure_logging("prod", stream=out, log_format="json")
        import asyncio
        import structlog

        async def main():
            await get_logger("probe").ainfo("from a coroutine", n=1)
            native = structlog.wrap_logger(
                structlog.PrintLogger(out),
                wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
                processors=[structlog.processors.JSONRenderer()],
            )
            await native.ainfo("native", n=2)

        asyncio.run(main())
        print(json.dumps([json.loads(line) for line in out.getvalue().splitlines()]))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    lines = json.loads(done.stdout)
    seen = [(line["event"], line["n"]) for line in lines]
    assert seen == [("from a coroutine", 1), ("native", 2)]
