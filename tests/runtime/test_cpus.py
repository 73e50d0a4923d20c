"""The CPUs a process may use: its affinity, and a container's cgroup CPU quota."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pytest

from crank.runtime.cpus import cgroup_cpu_quota, usable_cpus

if TYPE_CHECKING:
    from pathlib import Path


def cgroup(root: Path, v2: str | None = None, v1: tuple[str, str] | None = None) -> Path:
    if v2 is not None:
        (root / "cpu.max").write_text(v2 + "\n")
    if v1 is not None:
        (root / "cpu").mkdir()
        (root / "cpu" / "cpu.cfs_quota_us").write_text(v1[0] + "\n")
        (root / "cpu" / "cpu.cfs_period_us").write_text(v1[1] + "\n")
    return root


@pytest.mark.parametrize(
    ("v2", "v1", "quota"),
    [
        ("max 100000", None, None),  # v2, no quota
        ("150000 100000", None, 1.5),  # docker --cpus 1.5 on cgroup v2
        ("50000 100000", None, 0.5),
        (None, ("-1", "100000"), None),  # v1, no quota
        (None, ("200000", "100000"), 2.0),  # a Kubernetes limit of 2 CPUs on cgroup v1
        ("max 100000", ("200000", "100000"), None),  # v2 answers first
        (None, None, None),  # no cgroup files (not Linux, or not mounted)
        ("garbage", None, None),
        (None, ("lots", "100000"), None),
        ("0 100000", None, None),
    ],
)
def test_the_cgroup_quota_is_read_from_v2_then_v1(
    tmp_path: Path, v2: str | None, v1: tuple[str, str] | None, quota: float | None
) -> None:
    assert cgroup_cpu_quota(cgroup(tmp_path, v2, v1)) == quota


def affinity() -> int:
    return len(os.sched_getaffinity(0))


def test_usable_cpus_is_the_affinity_without_a_quota(tmp_path: Path) -> None:
    assert usable_cpus(cgroup(tmp_path, "max 100000")) == affinity()


def test_a_quota_bounds_the_cpus_in_whole_cpus_and_never_below_one(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    assert usable_cpus(cgroup(tmp_path / "a", "150000 100000")) == 1  # 1.5: one whole CPU
    assert usable_cpus(cgroup(tmp_path / "b", "10000 100000")) == 1  # a tenth: still one
    plenty = cgroup(tmp_path, None, (str(100_000 * (affinity() + 8)), "100000"))
    assert usable_cpus(plenty) == affinity()  # a quota above the affinity changes nothing


def test_the_affinity_bounds_the_cpus(tmp_path: Path) -> None:
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(before)})  # this thread only: restored below
    try:
        assert usable_cpus(cgroup(tmp_path, "max 100000")) == 1
    finally:
        os.sched_setaffinity(0, before)
