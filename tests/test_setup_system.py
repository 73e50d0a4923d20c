"""The README's second command: setup-system.sh as root, through sudo, or a clear refusal.

As root the script installs with apt-get (CI runs that for real through ``.ci/run``).
These tests run it as an unprivileged user (``nobody`` when the tests run as root,
else the current user), where it must start itself again through sudo, or, without
sudo, stop with a message that says what to do. The sudo here is a stand-in that
records how it was called: the real one would need a sudoers entry for ``nobody``.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def world_readable() -> Iterator[Path]:
    """A folder another user can read and write (pytest's tmp_path is private to us)."""
    folder = Path(tempfile.mkdtemp(prefix="crank-setup-"))
    folder.chmod(0o777)
    shutil.copy(REPO / "scripts" / "setup-system.sh", folder / "setup-system.sh")
    try:
        yield folder
    finally:
        shutil.rmtree(folder)


def _bin(folder: Path, tools: dict[str, str]) -> Path:
    """A PATH folder holding exactly ``tools`` (name -> script text or a path to link)."""
    bin_dir = folder / "bin"
    bin_dir.mkdir()
    bin_dir.chmod(0o755)
    for name, what in tools.items():
        target = bin_dir / name
        if what.startswith("/"):
            target.symlink_to(what)
        else:
            target.write_text(what, encoding="utf-8")
            target.chmod(target.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return bin_dir


def _run_unprivileged(folder: Path, bin_dir: Path) -> subprocess.CompletedProcess[str]:
    bash = shutil.which("bash")
    assert bash is not None
    argv = [bash, str(folder / "setup-system.sh")]
    if os.geteuid() == 0:
        runuser = shutil.which("runuser")
        assert runuser is not None, "runuser (util-linux) switches to an unprivileged user"
        argv = [runuser, "-u", "nobody", "--", *argv]
    env = {"PATH": str(bin_dir), "HOME": str(folder), "LANG": "C.UTF-8"}
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)


def _id() -> str:
    found = shutil.which("id")
    assert found is not None
    return found


def test_without_root_and_without_sudo_it_says_what_to_do(world_readable: Path) -> None:
    bin_dir = _bin(world_readable, {"id": _id()})
    done = _run_unprivileged(world_readable, bin_dir)
    assert done.returncode == 2
    assert done.stderr == (
        "setup-system.sh: apt-get needs root, and sudo is not installed.\n"
        "  fix: run it as root (su -c 'bash scripts/setup-system.sh'), or install sudo\n"
    )
    assert done.stdout == ""


def test_without_root_it_starts_itself_again_through_sudo(world_readable: Path) -> None:
    calls = world_readable / "sudo-calls"
    recording_sudo = f'#!/bin/sh\nprintf "%s\\n" "$@" > {calls}\nexit 0\n'
    bin_dir = _bin(world_readable, {"id": _id(), "sudo": recording_sudo})
    done = _run_unprivileged(world_readable, bin_dir)
    assert done.returncode == 0, done.stderr
    assert done.stderr == (
        "setup-system.sh: not root: running it again through sudo to install with apt-get\n"
    )
    assert calls.read_text(encoding="utf-8").splitlines() == [
        "DEBIAN_FRONTEND=noninteractive",
        "bash",
        str(world_readable / "setup-system.sh"),
    ]


def test_ci_runs_the_readme_command_verbatim() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```bash\n(.*?)```", readme, re.DOTALL)
    assert block is not None
    first, second = block.group(1).splitlines()[:2]
    assert first.startswith("pip install . ./plugins/crank-* && crank run ")
    command = second.partition("   #")[0].rstrip()
    assert command == "bash scripts/setup-system.sh && pip install nox && nox -s ci"
    printed = subprocess.run(
        ["bash", str(REPO / ".ci" / "run"), "--print-command"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert printed.stdout == command + "\n"
