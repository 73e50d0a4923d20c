"""benchmarks/process_groups.py: how every benchmark ends what it started, checked on real
process trees (a server that ignores SIGTERM, a worker in a session of its own)."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from types import ModuleType

pytestmark = pytest.mark.slow

MODULE = Path(__file__).resolve().parents[1] / "benchmarks" / "process_groups.py"

#: a "server" that ignores SIGTERM and starts a "worker" in a session of its own (as
#: ``crank run`` does), also deaf to SIGTERM; it prints the worker's pid once both run.
SERVER = """
import signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
worker = subprocess.Popen(
    [sys.executable, "-c",
     "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
     "print('up', flush=True); time.sleep(600)"],
    stdout=subprocess.PIPE, text=True, start_new_session=True,
)
worker.stdout.readline()
print(worker.pid, flush=True)
time.sleep(600)
"""


@pytest.fixture(scope="module")
def process_groups() -> ModuleType:
    spec = importlib.util.spec_from_file_location("process_groups", MODULE)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def running(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie has ended: only its exit status is left)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def start_server() -> tuple[subprocess.Popen[bytes], int]:
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER], stdout=subprocess.PIPE, start_new_session=True
    )
    assert server.stdout is not None
    worker = int(server.stdout.readline())  # both processes run
    server.stdout.close()
    return server, worker


def test_stop_trees_ends_a_deaf_server_and_the_worker_in_its_own_session(
    process_groups: ModuleType,
) -> None:
    server, worker = start_server()
    process_groups.stop_trees([server], grace_s=0.5)
    assert server.returncode == -signal.SIGKILL  # SIGTERM ignored: killed after the grace
    assert not running(worker)


def test_stop_groups_alone_leaves_a_worker_that_made_its_own_session(
    process_groups: ModuleType,
) -> None:
    """What stop_trees is for: the server's group alone does not hold its worker."""
    server, worker = start_server()
    try:
        process_groups.stop_groups([server], grace_s=0.5)
        assert server.returncode == -signal.SIGKILL
        assert running(worker)
    finally:
        os.killpg(worker, signal.SIGKILL)
        process_groups.end_group(worker)
    assert not running(worker)
