"""Running a command so that file permissions apply to it, root or not: the tests of
what crank says about a file or folder it may not read."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest


def unprivileged(argv: list[str]) -> list[str]:
    """``argv`` run so that file permissions apply: root reads a mode-000 file anyway,
    unless its process has given up the capabilities that override them."""
    if sys.platform != "linux":
        pytest.skip("file permission checks are set up for Linux")
    if os.geteuid() != 0:
        return argv
    setpriv = shutil.which("setpriv")
    drop = [setpriv or "setpriv", "--bounding-set=-dac_override,-dac_read_search"]
    if setpriv is None or subprocess.run([*drop, "true"], check=False).returncode != 0:
        pytest.skip("root, and setpriv cannot drop the capabilities that ignore permissions")
    return [*drop, *argv]
