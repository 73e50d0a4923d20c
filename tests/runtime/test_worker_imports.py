"""What a worker process imports while it serves: its footprint is the whole deployment's.

A worker imports its broker, its handlers and what runs them; not the CLI (click),
the HTTP server stack, jsonschema (only to word a validation error) or rich (which
structlog would pull in for console tracebacks: about 6 MB per process).
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import TYPE_CHECKING

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


@pytest.mark.slow
def test_a_serving_worker_imports_nothing_it_does_not_use(
    tmp_path: Path, worker_env: dict[str, str]
) -> None:
    url = f"sqlite:///{tmp_path / 'queue.db'}"
    modules = tmp_path / "modules.json"
    env = {k: v for k, v in worker_env.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    # the worker's own main, and at its exit the modules it had loaded
    code = (
        "import atexit, json, runpy, sys\n"
        f"out = {str(modules)!r}\n"
        "atexit.register(lambda: open(out, 'w').write(json.dumps(sorted(sys.modules))))\n"
        "runpy.run_module('crank.runtime.worker_process', run_name='__main__')\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code,
         "--broker", url, "--manifest", str(FIXTURE_MANIFEST), "--consumer", "imports"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        with connect(url) as queue:
            # a task run end to end: the imports of its first task are counted too
            assert queue.submit("fixture.echo", {"n": 1}).result(timeout=60)["echo"] == {"n": 1}
    finally:
        proc.terminate()
        assert proc.wait(timeout=60) == 0
    imported = {name.split(".")[0] for name in json.loads(modules.read_text())}
    assert {"crank", "sqlite3", "structlog"} <= imported  # the measurement itself works
    assert sorted(imported & set(NOT_IN_A_WORKER)) == []
