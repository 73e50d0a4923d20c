"""What the documented flows need: crank's wheel, a fresh virtual environment, Docker.

crank-workers is not on the package index yet: the wheel built here from this
checkout is what the index would serve, found through ``PIP_FIND_LINKS`` exactly
as ``pip install crank-workers`` would find it there. Everything else a page
installs comes from the index, as it does for a reader.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator
    from types import ModuleType

REPO = Path(__file__).resolve().parents[2]


def load_e2e() -> ModuleType:
    """scripts/e2e_docker.py: its wheel, Docker daemon and base-image helpers."""
    if "e2e_docker" in sys.modules:
        return sys.modules["e2e_docker"]
    spec = importlib.util.spec_from_file_location("e2e_docker", REPO / "scripts" / "e2e_docker.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["e2e_docker"] = module  # its dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def crank_wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding crank's wheel, built from this checkout."""
    folder = tmp_path_factory.mktemp("wheelhouse")
    load_e2e().crank_wheel(folder)
    return folder


def reader_env(wheelhouse: Path, venv_dir: Path | None = None) -> dict[str, str]:
    """A reader's shell: this environment minus the test run's own traces."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PYTEST_", "COV_", "NOX_"))
        and k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "DOCKER_HOST")
    }
    # the test runs inside some virtual environment: a reader's PATH does not have it
    own_bin = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p != own_bin)
    if venv_dir is not None:
        env["VIRTUAL_ENV"] = str(venv_dir)
        env["PATH"] = f"{venv_dir / 'bin'}{os.pathsep}{env['PATH']}"
    env["PIP_FIND_LINKS"] = f"{wheelhouse} {env.get('PIP_FIND_LINKS', '')}".strip()
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def fresh_venv(where: Path) -> Path:
    """A new virtual environment with pip (from this interpreter's base Python)."""
    subprocess.run(
        [sys.executable, "-m", "venv", str(where)], check=True, capture_output=True, timeout=300
    )
    return where


def checkout_copy(dest: Path) -> Path:
    """The files of this checkout a clone would have (tracked and not ignored)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
        timeout=120,
    ).stdout.split(b"\0")
    for raw in listed:
        if not raw:
            continue
        relative = Path(os.fsdecode(raw))
        source = REPO / relative
        if not source.is_file():
            continue  # deleted in the work tree
        target = dest / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
    return dest


@pytest.fixture
def docker_base_image(tmp_path: Path) -> Iterator[str | None]:
    """A local base image for ``crank build`` (no registry is reachable), or None.

    None when no Docker engine can be had here; in CI that is a failure, since the
    documented build must run there.
    """
    e2e = load_e2e()
    daemon = e2e.Daemon(tmp_path)
    try:
        daemon.ensure()
        image: str | None = e2e.BASE
        e2e.ensure_base(tmp_path)
    except e2e.E2EFailure as exc:
        if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
            pytest.fail(f"the documented image build needs Docker: {exc}")
        image = None
    try:
        yield image
    finally:
        daemon.stop()
