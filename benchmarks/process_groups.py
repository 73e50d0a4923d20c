"""Ending a measured server's whole process group, so nothing of it outlives its turn.

A server started with ``start_new_session=True`` leads a process group of its own;
everything it starts (uvicorn's, LitServe's, Celery's workers) inherits the group
unless it makes one. Stopping only the leader is not enough: LitServe's inference
workers outlive their parent's SIGTERM and spin at most of a core each, and left
running they would take the CPU of every server measured after them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

#: how long a group leader killed with SIGKILL may take to be reaped.
KILL_WAIT_S = 30.0


def group_members(pgid: int) -> list[int]:
    """The live (not zombie) processes of process group ``pgid``."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            # pid (comm) state ppid pgrp ...: comm may hold spaces, split after it
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if fields[0] != "Z" and int(fields[2]) == pgid:
                members.append(int(stat.parent.name))
    return members


def end_group(pgid: int, timeout_s: float = 30.0) -> None:
    """SIGKILL what is left of process group ``pgid`` and wait until none of it runs."""
    deadline = time.monotonic() + timeout_s
    while group_members(pgid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        if time.monotonic() > deadline:
            raise RuntimeError(f"process group {pgid} outlived SIGKILL for {timeout_s:g} s")
        time.sleep(0.05)


def stop_groups(
    procs: Sequence[subprocess.Popen[bytes]], *, grace_s: float, others: Iterable[int] = ()
) -> None:
    """Stop the process groups that ``procs`` lead, then make sure none of them runs.

    Every group gets SIGTERM at once; each leader then has up to ``grace_s`` to exit
    (its group is SIGKILLed if it does not). Last, what is left of each group, and of
    the groups ``others`` (processes that made groups of their own, found before
    anything was signalled), is SIGKILLed and waited for.
    """
    for proc in procs:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=KILL_WAIT_S)
    for group in dict.fromkeys([*(proc.pid for proc in procs), *others]):
        end_group(group)


def stop_group(proc: subprocess.Popen[bytes], *, grace_s: float) -> None:
    """SIGTERM ``proc``'s process group, up to ``grace_s`` for ``proc`` to exit, then
    SIGKILL whatever of the group is left and wait until none of it runs."""
    stop_groups([proc], grace_s=grace_s)


def children_of() -> dict[int, list[int]]:
    """Every live process's children, from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            # pid (comm) state ppid ...: comm may hold spaces, split after it
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(stat.parent.name))
    return children


def descendant_groups(pids: Iterable[int]) -> list[int]:
    """The process groups of ``pids`` and of all their descendants, this process's own
    group left out: the groups a process that started others in sessions of their own
    (``crank run`` starts its workers so) leaves behind if it dies first."""
    children = children_of()
    groups: list[int] = []
    todo = list(pids)
    while todo:
        pid = todo.pop()
        with contextlib.suppress(ProcessLookupError):
            group = os.getpgid(pid)
            if group not in groups and group != os.getpgrp():
                groups.append(group)
        todo += children.get(pid, [])
    return groups


def stop_trees(procs: Sequence[subprocess.Popen[bytes]], *, grace_s: float) -> None:
    """``stop_groups`` for ``procs`` and every group their descendants made, found before
    anything is signalled (once their parent is gone, init adopts them)."""
    stop_groups(procs, grace_s=grace_s, others=descendant_groups(proc.pid for proc in procs))
