"""Fixtures of the generator tests: freshly scaffolded worker projects."""

from __future__ import annotations

import shutil
from typing import TYPE_CHECKING

import pytest

from crank.generate.scaffold import new_worker

if TYPE_CHECKING:
    from pathlib import Path


@pytest.fixture(scope="session")
def pristine_worker(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A worker scaffolded once per session; copy it before changing anything."""
    out = tmp_path_factory.mktemp("pristine")
    return new_worker("text-echo", output_dir=out).target


@pytest.fixture
def worker_project(pristine_worker: Path, tmp_path: Path) -> Path:
    """A private copy of the scaffolded worker, free to edit."""
    target = tmp_path / "text-echo"
    shutil.copytree(pristine_worker, target)
    return target


@pytest.fixture(scope="session")
def gpu_worker(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("gpu")
    return new_worker(
        "vision-gpu", capabilities=["vision.classify"], gpu="required", output_dir=out
    ).target


def tree(root: Path) -> dict[str, str]:
    """Every file and folder under ``root`` (relative path -> content digest or 'dir')."""
    import hashlib

    snapshot: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_symlink():
            snapshot[rel] = "link:" + str(path.readlink())
        elif path.is_dir():
            snapshot[rel] = "dir"
        else:
            snapshot[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return snapshot
