"""The private temporary directory of one ``crank run``.

It holds what the processes of one run share through files: the workers' metrics files
(prometheus-client's multiprocess mode) and the concurrency slots. ``crank run`` removes it
when it stops. A run that cannot clean up (``kill -9``, the OOM killer, a power cut) leaves
it behind; the next ``crank run`` on the machine, under the same temporary directory
(``TMPDIR``), removes it. Without that, a worker restarted after every crash by systemd or
a container runtime fills the temporary directory, one directory per crash.

How a directory's run is known to be gone: ``crank run`` and each process it starts hold
a shared ``flock`` on the directory's ``.owner`` file for as long as they live (a worker
process whose parent was killed still drains its tasks, writing its metrics there), and
the kernel drops a process's lock however it ended. A directory whose owner file another
run can lock exclusively is abandoned. ``crank run`` takes its lock before the file gets
its name, so a run looking for abandoned directories never finds a new run's file
unlocked.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

PREFIX = "crank-run-"
OWNER = ".owner"
#: the run directory, in the environment of the processes ``crank run`` starts.
RUN_DIR_ENV = "CRANK_RUN_DIR"
#: the owner-file descriptors this process holds for its life (see :func:`hold`).
_HELD: list[int] = []


@contextlib.contextmanager
def run_directory(root: Path | None = None) -> Iterator[Path]:
    """A new private directory (mode 0700) under ``root`` (the temporary directory), owned
    by this process until the block ends; abandoned ones are removed first."""
    remove_abandoned(root)
    path = Path(tempfile.mkdtemp(prefix=PREFIX, dir=root))
    try:
        owner = _own(path)
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)
        raise
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
        os.close(owner)


def _own(path: Path) -> int:
    """Lock the directory's owner file (a descriptor no child inherits across exec)."""
    staging = path / f"{OWNER}.new"
    fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        staging.rename(path / OWNER)
    except BaseException:
        os.close(fd)
        raise
    return fd


def hold(environ: Mapping[str, str] | None = None) -> bool:
    """In a process ``crank run`` started: share the lock on the run's directory until
    this process ends, so that no other run removes it while this one still writes
    there. False when there is no run directory (a process started alone) or it is
    already being removed (its run is gone)."""
    directory = (os.environ if environ is None else environ).get(RUN_DIR_ENV)
    if not directory:
        return False
    try:
        fd = os.open(Path(directory) / OWNER, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return False
    _HELD.append(fd)
    return True


def remove_abandoned(root: Path | None = None) -> list[Path]:
    """Remove the run directories under ``root`` whose run is gone; return them.

    One without an owner file is left alone (its run is making it, or it is not a
    run's), as is one this user may not open (another user's: private to it).
    """
    removed: list[Path] = []
    for path in Path(root or tempfile.gettempdir()).glob(f"{PREFIX}*"):
        try:
            fd = os.open(path / OWNER, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # its run is alive
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
        finally:
            os.close(fd)
    return removed


__all__ = ["OWNER", "PREFIX", "RUN_DIR_ENV", "hold", "remove_abandoned", "run_directory"]
