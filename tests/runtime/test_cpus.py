"""The CPUs a process may use: its affinity, and the CPU quotas of its cgroups (v2 and
v1, its own cgroup and those above it), read from a cgroup tree laid out in a folder."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pytest

from crank.runtime.cpus import cgroup_cpu_quota, usable_cpus

if TYPE_CHECKING:
    from pathlib import Path


class Tree:
    """A fake ``/sys/fs/cgroup`` and ``/proc/self/cgroup`` under ``tmp_path``."""

    def __init__(self, tmp_path: Path, *, v2: bool) -> None:
        self.root = tmp_path / "sys-fs-cgroup"
        self.root.mkdir()
        self.proc = tmp_path / "proc-self-cgroup"
        self.v2 = v2
        if v2:
            (self.root / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")

    def member_of(self, path: str, v1_controllers: str = "cpu,cpuacct") -> Tree:
        line = f"0::{path}" if self.v2 else f"4:{v1_controllers}:{path}\n1:name=systemd:/"
        self.proc.write_text(line + "\n")
        return self

    def quota(self, path: str, value: str, period: str = "100000", *, mount: str = "") -> Tree:
        folder = self.root.joinpath(mount, *[p for p in path.split("/") if p])
        folder.mkdir(parents=True, exist_ok=True)
        if self.v2:
            (folder / "cpu.max").write_text(f"{value} {period}\n")
        else:
            (folder / "cpu.cfs_quota_us").write_text(f"{value}\n")
            (folder / "cpu.cfs_period_us").write_text(f"{period}\n")
        return self

    def cpu_quota(self) -> float | None:
        return cgroup_cpu_quota(self.root, self.proc)

    def cpus(self) -> int:
        return usable_cpus(self.root, self.proc)


def affinity() -> int:
    return len(os.sched_getaffinity(0))


@pytest.mark.parametrize(
    ("value", "quota"),
    [("max", None), ("150000", 1.5), ("50000", 0.5), ("0", None), ("lots", None)],
)
def test_v2_the_root_of_a_container(tmp_path: Path, value: str, quota: float | None) -> None:
    tree = Tree(tmp_path, v2=True).member_of("/").quota("/", value)  # docker --cpus, cgroupns
    assert tree.cpu_quota() == quota


def test_v2_the_smallest_quota_on_the_way_up_binds(tmp_path: Path) -> None:
    service = "/system.slice/app.service"
    tree = Tree(tmp_path, v2=True).member_of(service)
    tree.quota(service, "max").quota("/system.slice", "300000")  # CPUQuota=300% on the slice
    assert tree.cpu_quota() == 3.0
    tree.quota(service, "150000")  # and 150 % on the service itself
    assert tree.cpu_quota() == 1.5
    assert tree.cpus() == 1


def test_v2_a_path_not_under_the_mount_falls_back_to_the_root(tmp_path: Path) -> None:
    """A container without a cgroup namespace: /proc names the host's path, while
    /sys/fs/cgroup is the container's own cgroup."""
    tree = Tree(tmp_path, v2=True).member_of("/docker/0123abcd").quota("/", "200000")
    assert tree.cpu_quota() == 2.0


def test_v1_the_cpu_controller_s_mount_and_its_lineage(tmp_path: Path) -> None:
    pod = "/kubepods/burstable/pod1"
    tree = Tree(tmp_path, v2=False).member_of(f"{pod}/c1")
    tree.quota(pod, "200000", mount="cpu,cpuacct").quota(f"{pod}/c1", "-1", mount="cpu,cpuacct")
    assert tree.cpu_quota() == 2.0  # the pod's limit; the container sets none
    tree.quota(f"{pod}/c1", "50000", mount="cpu,cpuacct")
    assert tree.cpu_quota() == 0.5
    assert tree.cpus() == 1  # never below one


def test_v1_no_quota_anywhere(tmp_path: Path) -> None:
    tree = Tree(tmp_path, v2=False).member_of("/", "cpu").quota("/", "-1", mount="cpu")
    assert tree.cpu_quota() is None
    assert tree.cpus() == affinity()


def test_nothing_to_read_is_no_quota(tmp_path: Path) -> None:
    bare = Tree(tmp_path, v2=False)  # neither /proc/self/cgroup nor a cpu controller
    assert bare.cpu_quota() is None
    assert bare.cpus() == affinity()


def test_a_quota_above_the_affinity_changes_nothing(tmp_path: Path) -> None:
    tree = Tree(tmp_path, v2=True).member_of("/").quota("/", str(100_000 * (affinity() + 8)))
    assert tree.cpus() == affinity()


def test_the_affinity_bounds_the_cpus(tmp_path: Path) -> None:
    tree = Tree(tmp_path, v2=True).member_of("/").quota("/", "max")
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(before)})  # this thread only: restored below
    try:
        assert tree.cpus() == 1
    finally:
        os.sched_setaffinity(0, before)


def test_this_machine_answers_without_an_error() -> None:
    """The real /sys/fs/cgroup and /proc/self/cgroup, whatever they hold here."""
    assert 1 <= usable_cpus() <= affinity()
