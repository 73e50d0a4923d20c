"""Running a command so that file permissions apply to it, root or not: the tests of
what crank says about a file or folder it may not read."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from typing import TYPE_CHECKING

from crank.testing import ensure_dependency

if TYPE_CHECKING:
    from pathlib import Path


def unprivileged(argv: list[str]) -> list[str]:
    """``argv`` run so that file permissions apply: root reads a mode-000 file anyway,
    unless its process has given up the capabilities that override them (``setpriv``,
    of util-linux)."""
    if os.geteuid() != 0:
        return argv
    ensure_dependency("exe:setpriv", install_hint="apt-get install util-linux")
    program = shutil.which("setpriv") or "setpriv"
    return [program, "--bounding-set=-dac_override,-dac_read_search", *argv]


def crank_unprivileged(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """``crank ARGS`` in ``cwd``, run so that file permissions apply (see above)."""
    return subprocess.run(
        unprivileged([sys.executable, "-m", "crank", *args]),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
