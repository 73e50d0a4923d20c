"""Fixtures for the pytest plugin's own tests.

Every test starts with the environment variables that steer the plugin removed
(the suite itself runs with CI=true in CI) and with an empty dependency cache.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
import subprocess
import time
from typing import TYPE_CHECKING

import pytest

# Imported here, before any in-process pytester run: pytester restores sys.modules after
# each run, and PyYAML's C loader keeps pointing at the node classes of the first import,
# so a yaml first imported inside a run would leave two incompatible copies behind.
import yaml  # noqa: F401

# The same for onnxruntime, whose C extension refuses a second load in one process:
# first imported inside an in-process run, the next run importing it fails.
with contextlib.suppress(ImportError):
    import onnxruntime  # noqa: F401

from crank.testing.dependencies import clear_dependency_cache

from ..ports import free_port

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytest_plugins = ["pytester"]

STEERING_ENV = ("CI", "CRANK_REQUIRE", "CRANK_GPU_STRATEGY", "PYTEST_ADDOPTS")
#: The environment as the suite started (CI decides whether an unavailable install fails).
ORIGINAL_ENV = {name: os.environ.get(name, "") for name in STEERING_ENV}


@pytest.fixture(autouse=True)
def clean_crank_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in STEERING_ENV:
        monkeypatch.delenv(name, raising=False)
    clear_dependency_cache()
    yield
    clear_dependency_cache()


def write_executable(path: Path, script: str) -> Path:
    path.write_text("#!/bin/sh\n" + script + "\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


@pytest.fixture
def fake_bin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder put first on PATH where a test writes small stand-in programs."""
    folder = tmp_path / "bin"
    folder.mkdir()
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    return folder


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A private redis-server on a free loopback port."""
    port = free_port()
    proc = subprocess.Popen(
        [
            "redis-server",
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.02)
        yield f"redis://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
