"""How many CPUs this process may use: its CPU affinity, and a container's CPU quota.

``os.cpu_count()`` counts the machine's CPUs. In a container limited to two CPUs on a
64-core host it says 64, and a server that starts a process per CPU from it starts
32 times too many. What bounds this process is the smaller of the CPUs it may be
scheduled on (``sched_getaffinity``: ``taskset``, a cpuset) and the cgroup's CPU
quota (``cpu.max`` in cgroup v2, ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` in
v1: Docker's ``--cpus``, a Kubernetes CPU limit), rounded down to whole CPUs, at
least one.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

#: where a container sees its own cgroup (cgroup namespaces, Docker, Kubernetes).
CGROUP_ROOT = Path("/sys/fs/cgroup")


def cgroup_cpu_quota(root: Path = CGROUP_ROOT) -> float | None:
    """The CPUs the cgroup's quota allows (1.5 for ``150000 100000``); None when it
    sets none or cannot be read."""
    try:
        quota, period = (root / "cpu.max").read_text(encoding="ascii").split()[:2]
    except (OSError, ValueError):
        pass
    else:  # cgroup v2: "<quota> <period>", or "max <period>" for no quota
        if quota == "max":
            return None
        return _ratio(quota, period)
    try:
        quota = (root / "cpu" / "cpu.cfs_quota_us").read_text(encoding="ascii")
        period = (root / "cpu" / "cpu.cfs_period_us").read_text(encoding="ascii")
    except OSError:
        return None
    return _ratio(quota, period)  # cgroup v1: a quota of -1 is none


def _ratio(quota: str, period: str) -> float | None:
    try:
        q, p = int(quota), int(period)
    except ValueError:
        return None
    return q / p if q > 0 and p > 0 else None


def usable_cpus(root: Path = CGROUP_ROOT) -> int:
    """Whole CPUs this process may use (see the module docstring), at least 1."""
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        count = os.cpu_count() or 1
    quota = cgroup_cpu_quota(root)
    if quota is not None:
        count = min(count, math.floor(quota))
    return max(1, count)


__all__ = ["CGROUP_ROOT", "cgroup_cpu_quota", "usable_cpus"]
