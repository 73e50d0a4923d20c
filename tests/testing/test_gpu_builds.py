"""onnxruntime-gpu installed beside onnxruntime: once, whole, and safely under xdist."""

from __future__ import annotations

import subprocess
from typing import TYPE_CHECKING

from crank.testing import gpu_builds

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    import pytest

FILES = {"onnxruntime/__init__.py": "", "onnxruntime/capi.py": "BUILD = 'gpu'\n"}


def fake_pip(
    calls: list[Path], before_install: Callable[[], None] = lambda: None
) -> Callable[[Path, str], subprocess.CompletedProcess[str]]:
    """pip install --target: skips what the target already holds, as pip does without
    --upgrade ("Target directory ... already exists")."""

    def install(target: Path, requirement: str) -> subprocess.CompletedProcess[str]:
        calls.append(target)
        before_install()
        existing = {path.name for path in target.iterdir()} if target.is_dir() else set()
        for name, text in FILES.items():
            if name.split("/")[0] in existing:
                continue  # an existing top-level folder is left as it is
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            (target / name).write_text(text)
        return subprocess.CompletedProcess([], 0, "", "")

    return install


def test_installed_once_then_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Path] = []
    monkeypatch.setattr(gpu_builds, "pip_install_target", fake_pip(calls))
    site = gpu_builds.install_onnxruntime_gpu(tmp_path)
    assert (site / "onnxruntime" / "capi.py").read_text() == "BUILD = 'gpu'\n"
    assert gpu_builds.install_onnxruntime_gpu(tmp_path) == site
    assert len(calls) == 1


def test_a_partial_install_left_behind_is_not_taken_for_a_whole_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pip --target skipped the half-copied package of an interrupted run (or of an
    xdist worker still copying) and the folder was then marked complete."""
    site = tmp_path / gpu_builds.gpu_build_requirement().replace("<=", "-upto-")
    (site / "onnxruntime").mkdir(parents=True)
    (site / "onnxruntime" / "__init__.py").write_text("")  # capi.py never arrived
    monkeypatch.setattr(gpu_builds, "pip_install_target", fake_pip([]))
    assert gpu_builds.install_onnxruntime_gpu(tmp_path) == site
    assert (site / "onnxruntime" / "capi.py").read_text() == "BUILD = 'gpu'\n"


def test_another_process_that_finished_first_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two xdist workers install at once: the one that finishes second keeps the first's."""
    calls: list[Path] = []

    def the_other_worker_finishes() -> None:
        monkeypatch.setattr(gpu_builds, "pip_install_target", fake_pip([]))
        gpu_builds.install_onnxruntime_gpu(tmp_path)

    monkeypatch.setattr(
        gpu_builds, "pip_install_target", fake_pip(calls, the_other_worker_finishes)
    )
    site = gpu_builds.install_onnxruntime_gpu(tmp_path)
    assert (site / "onnxruntime" / "capi.py").read_text() == "BUILD = 'gpu'\n"
    assert calls and calls[0] != site  # pip never wrote into the folder being used
    assert sorted(p.name for p in tmp_path.iterdir()) == [site.name]  # nothing left over
