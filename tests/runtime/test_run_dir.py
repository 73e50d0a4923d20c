"""The private directory of one ``crank run``: removed at its stop, and by the next run when
its run was killed (``kill -9``) and no process of it is left."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

from crank.runtime.run_dir import OWNER, PREFIX, RUN_DIR_ENV, hold, remove_abandoned, run_directory

#: a process that makes a run directory under argv[1], prints it, and (with argv[2] set)
#: starts a child that shares its lock and prints the child's pid; then waits for ever.
OWNER_PROCESS = """
import os, subprocess, sys, time
from pathlib import Path
from crank.runtime.run_dir import RUN_DIR_ENV, run_directory
with run_directory(Path(sys.argv[1])) as path:
    print(path, flush=True)
    if len(sys.argv) > 2:
        child = subprocess.Popen(
            [sys.executable, "-c", sys.argv[2]], env={**os.environ, RUN_DIR_ENV: str(path)},
            stdout=subprocess.PIPE, text=True,
        )
        print(child.pid, child.stdout.readline().strip(), flush=True)
    time.sleep(3600)
"""

#: a child of a run that shares its directory's lock, says so, and waits for ever.
HOLDER = """
import time
from crank.runtime.run_dir import hold
print("held" if hold() else "not held", flush=True)
time.sleep(3600)
"""


def _start(root: Path, *child: str) -> tuple[subprocess.Popen[str], Path, list[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-c", OWNER_PROCESS, str(root), *child], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    path = Path(proc.stdout.readline().strip())
    extra = proc.stdout.readline().split() if child else []
    return proc, path, extra


def _kill(proc: subprocess.Popen[str]) -> None:
    proc.kill()
    proc.wait()
    assert proc.stdout is not None
    proc.stdout.close()


def _wait_gone(pid: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.01)
    raise AssertionError(f"process {pid} still alive")


def test_a_run_directory_is_private_and_removed_when_its_run_stops(tmp_path: Path) -> None:
    with run_directory(tmp_path) as path:
        assert path.parent == tmp_path
        assert path.name.startswith(PREFIX)
        assert stat.S_IMODE(path.stat().st_mode) == 0o700
        assert (path / OWNER).is_file()
        (path / "metrics").mkdir()
        (path / "metrics" / "counter_1.db").write_bytes(b"x")
        # its own run is alive: another run's sweep leaves it
        assert remove_abandoned(tmp_path) == []
        assert path.exists()
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []


def test_a_killed_runs_directory_is_removed_by_the_next_run(tmp_path: Path) -> None:
    killed, killed_dir, _ = _start(tmp_path)
    alive, alive_dir, _ = _start(tmp_path)
    try:
        (killed_dir / "metrics").mkdir()
        (killed_dir / "metrics" / "counter_9.db").write_bytes(b"x")
        _kill(killed)
        with run_directory(tmp_path) as mine:
            assert not killed_dir.exists()
            assert alive_dir.exists()  # its run lives
            assert mine.exists()
    finally:
        _kill(alive)


def test_a_directory_stays_while_a_process_of_its_run_lives(tmp_path: Path) -> None:
    """A worker process outlives a killed ``crank run`` while it drains its tasks."""
    owner, path, (child, said) = _start(tmp_path, HOLDER)
    assert said == "held"
    try:
        _kill(owner)
        assert remove_abandoned(tmp_path) == []
        assert path.exists()
    finally:
        os.kill(int(child), signal.SIGKILL)
    _wait_gone(int(child))
    assert remove_abandoned(tmp_path) == [path]
    assert not path.exists()


def test_what_is_not_a_runs_directory_is_left_alone(tmp_path: Path) -> None:
    # a run making its directory (no owner file yet), and another program's directory
    (tmp_path / f"{PREFIX}making").mkdir()
    (tmp_path / f"{PREFIX}other").mkdir()
    (tmp_path / f"{PREFIX}other" / "data").write_text("keep")
    (tmp_path / "crank-metrics-old").mkdir()
    # an owner file that is a link somewhere else is not followed
    (tmp_path / f"{PREFIX}link").mkdir()
    (tmp_path / "target").write_text("keep")
    (tmp_path / f"{PREFIX}link" / OWNER).symlink_to(tmp_path / "target")
    assert remove_abandoned(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "crank-metrics-old",
        f"{PREFIX}link",
        f"{PREFIX}making",
        f"{PREFIX}other",
        "target",
    ]


def test_hold_outside_a_run_holds_nothing(tmp_path: Path) -> None:
    assert hold({}) is False
    assert hold({RUN_DIR_ENV: str(tmp_path / "gone")}) is False
