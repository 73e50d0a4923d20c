"""schemathesis fuzzes every operation of ``/openapi.json`` against a live ``crank run``.

The only check is ``not_a_server_error``. A 504 is crank's documented answer when
a synchronous call's result does not arrive within the capability's timeout (the
fuzzer queues many slow tasks), so it counts as expected; any other 5xx fails.
"""

from __future__ import annotations

import shutil
import subprocess
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.slow

CONFIG = """
[checks]
not_a_server_error.expected-statuses = ["1xx", "2xx", "3xx", "4xx", "504"]
"""


def test_schemathesis_finds_no_server_error(crank_run: Any, tmp_path: Path) -> None:
    exe = shutil.which("schemathesis") or shutil.which("st")
    if exe is None:
        pytest.skip("schemathesis is not installed (pip install schemathesis)")
    run = crank_run("--min-workers", "2", "--max-workers", "2")
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    argv = [
        exe, "--config-file", str(config), "run", f"{run.url}/openapi.json",
        "--checks", "not_a_server_error",
        "--max-examples", "8",
        "--phases", "examples,fuzzing,stateful",
        "--seed", "7",
        "--request-timeout", "30",
        "--no-color",
    ]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert "passed" in done.stdout
    assert " 500" not in run.log()
