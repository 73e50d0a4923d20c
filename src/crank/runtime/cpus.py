"""How many CPUs this process may use: its CPU affinity, and its cgroups' CPU quotas.

``os.cpu_count()`` counts the machine's CPUs. In a container limited to two CPUs on a
64-core host it says 64, and a server that starts a process per CPU from it starts
32 times too many. What bounds this process is the smaller of the CPUs it may be
scheduled on (``sched_getaffinity``: ``taskset``, a cpuset) and the CPU quota of its
cgroup and of every cgroup above it (``cpu.max`` in cgroup v2, ``cpu.cfs_quota_us`` /
``cpu.cfs_period_us`` in v1: Docker's ``--cpus``, a Kubernetes CPU limit, systemd's
``CPUQuota=``), rounded down to whole CPUs, at least one.

The cgroup is found from ``/proc/self/cgroup`` under ``/sys/fs/cgroup``; where that
path is not there (a container that sees its own cgroup as the root, without a
cgroup namespace) the root's quota is the container's.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

#: where the cgroup hierarchies are mounted.
CGROUP_ROOT = Path("/sys/fs/cgroup")
#: which cgroups this process is in, one line per hierarchy.
PROC_CGROUP = Path("/proc/self/cgroup")


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError):
        return None


def _ratio(quota: str, period: str) -> float | None:
    try:
        q, p = int(quota), int(period)
    except ValueError:
        return None
    return q / p if q > 0 and p > 0 else None


def _v2_quota(folder: Path) -> float | None:
    """``cpu.max``: ``<quota> <period>``, or ``max <period>`` for none."""
    text = _read(folder / "cpu.max")
    fields = text.split() if text else []
    if len(fields) != 2 or fields[0] == "max":
        return None
    return _ratio(*fields)


def _v1_quota(folder: Path) -> float | None:
    """``cpu.cfs_quota_us`` over ``cpu.cfs_period_us`` (a quota of -1 is none)."""
    quota, period = _read(folder / "cpu.cfs_quota_us"), _read(folder / "cpu.cfs_period_us")
    if quota is None or period is None:
        return None
    return _ratio(quota.strip(), period.strip())


def _own_paths(proc_cgroup: Path) -> tuple[str | None, str | None]:
    """This process's cgroup path in the v2 hierarchy and in v1's ``cpu`` controller."""
    v2 = v1 = None
    for line in (_read(proc_cgroup) or "").splitlines():
        number, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if number == "0" and controllers == "":
            v2 = path
        elif "cpu" in controllers.split(","):
            v1 = path
    return v2, v1


def _lineage(mount: Path, path: str | None) -> list[Path]:
    """``mount``/``path`` and every folder above it up to ``mount``, where it exists;
    ``mount`` alone when the path is not under it."""
    parts = [part for part in (path or "").split("/") if part]
    own = mount.joinpath(*parts)
    if parts and not own.is_dir():
        return [mount]
    return [mount.joinpath(*parts[:depth]) for depth in range(len(parts), -1, -1)]


def cgroup_cpu_quota(root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> float | None:
    """The CPUs the quotas of this process's cgroups allow (1.5 for ``150000 100000``;
    the smallest along the way up); None when none sets one or none can be read."""
    v2_path, v1_path = _own_paths(proc_cgroup)
    if (root / "cgroup.controllers").exists():  # the unified (v2) hierarchy
        quotas = [_v2_quota(folder) for folder in _lineage(root, v2_path)]
    else:  # v1: the cpu controller's own mount (often "cpu,cpuacct" with "cpu" a link)
        mount = next((m for m in (root / "cpu", root / "cpu,cpuacct") if m.is_dir()), None)
        quotas = [] if mount is None else [_v1_quota(f) for f in _lineage(mount, v1_path)]
    found = [quota for quota in quotas if quota is not None]
    return min(found) if found else None


def usable_cpus(root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> int:
    """Whole CPUs this process may use (see the module docstring), at least 1."""
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        count = os.cpu_count() or 1
    quota = cgroup_cpu_quota(root, proc_cgroup)
    if quota is not None:
        count = min(count, math.floor(quota))
    return max(1, count)


__all__ = ["CGROUP_ROOT", "PROC_CGROUP", "cgroup_cpu_quota", "usable_cpus"]
