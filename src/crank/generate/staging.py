"""What ``crank build`` puts into the build context for one build, then removes.

``crank-wheels/`` (kept out of git by the generated .gitignore) holds:

* ``deps/``: every wheel ``requirements.lock`` pins, for each supported Python on
  the Docker engine's machine, downloaded by pip and checked against the lock's
  hashes (the image checks them again when it installs them);
* ``crank/``: a wheel of the running crank (:mod:`crank.generate.wheel`);
* ``worker/``: the worker's own wheel, built from the project with pip.

The Dockerfile installs from these alone (``--no-index``), so the image build
needs no package index and installs exactly what the lock says.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from crank.errors import GenerateError
from crank.generate.context import PYTHON_VERSIONS
from crank.generate.docker import WHEELS_DIR
from crank.generate.lock import LOCK_FILE, download_wheels
from crank.generate.wheel import build_crank_wheel

if TYPE_CHECKING:
    from pathlib import Path
    from types import TracebackType

    from crank.generate.project import WorkerProject

Progress = Callable[[str], None]


def check_crank_wheel(path: Path) -> None:
    """``--crank-wheel``: an existing ``.whl`` file, else a GenerateError saying which."""
    if not path.exists():
        why = "no such file"
    elif not path.is_file():
        why = "not a file"
    elif not path.name.endswith(".whl"):
        why = "not a wheel file (its name does not end in .whl)"
    else:
        return
    raise GenerateError(
        f"--crank-wheel {path}: {why}",
        hint="pass a crank_workers-*.whl, or leave --crank-wheel out to pack the running crank",
        subject=str(path),
    )


def build_worker_wheel(project: WorkerProject, dest: Path) -> Path:
    """The worker's wheel, built from its project folder with pip."""
    dest.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dest),
         str(project.root)],
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    wheels = sorted(dest.glob("*.whl"))
    if proc.returncode != 0 or not wheels:
        raise GenerateError(
            f"building the wheel of {project.root} failed: {proc.stderr.strip()[-1500:]}",
            hint="`pip wheel --no-deps .` in the project shows the problem (pyproject.toml, "
            "the build backend)",
            subject=str(project.root),
        )
    return wheels[-1]


class StagedWheels:
    """``crank-wheels/`` filled for one build; removed on exit, whatever happened."""

    def __init__(
        self,
        project: WorkerProject,
        *,
        machine: str,
        crank_wheel: Path | None = None,
        progress: Progress | None = None,
    ) -> None:
        self.project = project
        self.dir = project.root / WHEELS_DIR
        self.machine = machine
        self.crank_wheel = crank_wheel
        self.progress = progress or (lambda line: None)
        self.created = False

    def __enter__(self) -> StagedWheels:
        if self.crank_wheel is not None:
            check_crank_wheel(self.crank_wheel)
        if self.dir.exists():
            raise GenerateError(
                f"{self.dir} already exists (left by an interrupted build?)",
                hint=f"crank build fills {WHEELS_DIR}/ itself: remove it and build again",
                subject=str(self.dir),
            )
        self.dir.mkdir()
        self.created = True
        try:
            self.progress("staging this crank's wheel")
            if self.crank_wheel is None:
                build_crank_wheel(self.dir / "crank")
            else:
                (self.dir / "crank").mkdir()
                shutil.copy2(self.crank_wheel, self.dir / "crank" / self.crank_wheel.name)
            self.progress("building the worker's wheel")
            build_worker_wheel(self.project, self.dir / "worker")
            self.progress(
                f"downloading the locked wheels for Python {', '.join(PYTHON_VERSIONS)} "
                f"({self.machine})"
            )
            download_wheels(
                self.project.root / LOCK_FILE,
                self.dir / "deps",
                machine=self.machine,
                pythons=PYTHON_VERSIONS,
            )
        except BaseException:
            self.remove()
            raise
        return self

    def remove(self) -> None:
        if self.created:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.created = False

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.remove()
