"""Fixtures shared by every test folder: the test plugin packages, installed privately.

The plugins under tests/fixtures/plugins are real pip-installable packages. They
are installed with ``pip install --target`` into per-session folders, never into
the environment running the tests: a globally installed broken plugin would
warn (an error under ``filterwarnings = error``) in every other test.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

FIXTURE_PLUGINS = Path(__file__).parent / "fixtures" / "plugins"


@dataclass(frozen=True)
class PluginSites:
    """Folders to put on sys.path / PYTHONPATH to 'install' each test plugin."""

    good: Path
    broken: Path
    #: loads, but each of its contributions is broken (one per registry)
    misbehaving: Path
    #: a worker package (with its crank.yaml) whose import fails on a missing module.
    missing_dep: Path


def _pip_install(package: Path, target: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--disable-pip-version-check",
            "--target",
            str(target),
            str(package),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


@pytest.fixture(scope="session")
def test_plugins(tmp_path_factory: pytest.TempPathFactory) -> PluginSites:
    root = tmp_path_factory.mktemp("plugin-sites")
    plugins = PluginSites(
        good=root / "good",
        broken=root / "broken",
        misbehaving=root / "misbehaving",
        missing_dep=root / "missing-dep",
    )
    jobs = []
    for name, target in (
        ("crank-testplugin-good", plugins.good),
        ("crank-testplugin-broken", plugins.broken),
        ("crank-testplugin-misbehaving", plugins.misbehaving),
        ("crank-testplugin-missing-dep", plugins.missing_dep),
    ):
        # built from a copy: setuptools writes build/ and *.egg-info next to the sources
        source = shutil.copytree(FIXTURE_PLUGINS / name, root / "src" / name)
        jobs.append(_pip_install(source, target))
    for job in jobs:
        out, _ = job.communicate(timeout=240)
        assert job.returncode == 0, out.decode(errors="replace")
    return plugins


@pytest.fixture(scope="session")
def run_crank() -> Callable[..., subprocess.CompletedProcess[str]]:
    """``run_crank(*args, pythonpath=[...], cwd=..., **env)``: crank in a fresh process."""
    return _run_crank


def _run_crank(
    *args: str, pythonpath: list[Path] | None = None, cwd: Path | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m crank`` in a fresh process with extra folders on PYTHONPATH."""
    environ = {
        k: v for k, v in os.environ.items() if k not in ("GITHUB_ACTIONS", "CRANK_DISABLE_PLUGINS")
    }
    if pythonpath:
        environ["PYTHONPATH"] = os.pathsep.join(str(p) for p in pythonpath)
    environ.update(env)
    return subprocess.run(
        [sys.executable, "-m", "crank", *args],
        capture_output=True,
        text=True,
        env=environ,
        cwd=cwd,
        timeout=120,
        check=False,
    )


@pytest.fixture
def plugins_on_path(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., None]]:
    """``plugins_on_path(folder, ...)``: 'install' plugin folders in this process.

    The process-wide plugin manager is rebuilt on next use, and again afterwards.
    """
    from crank.plugins import reset_plugin_manager

    def add(*folders: Path) -> None:
        for folder in folders:
            monkeypatch.syspath_prepend(str(folder))
        reset_plugin_manager()

    yield add
    monkeypatch.undo()
    for name in [m for m in sys.modules if m.startswith("crank_testplugin_")]:
        del sys.modules[name]
    reset_plugin_manager()
