"""Fixtures of the generator tests: freshly scaffolded worker projects."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from crank.generate.scaffold import new_worker


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


def overlay_venv(path: Path) -> Path:
    """A fresh venv that also sees the running environment's packages (crank included).

    ``system_site_packages`` would expose the *base* interpreter's packages, not those
    of a venv running the tests (nox); a .pth file adding the running environment's
    site folders works in both cases and keeps installs into the new venv private.
    """
    import subprocess
    import sysconfig
    import venv

    venv.EnvBuilder(with_pip=True).create(path)
    python = path / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    parents = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
    (Path(site) / "_crank_parent_env.pth").write_text(
        "".join(f"import site; site.addsitedir({d!r})\n" for d in parents)
    )
    return python
