"""onnxruntime-gpu beside the installed onnxruntime, so a CPU machine can test the GPU build.

onnxruntime-gpu lists ``CUDAExecutionProvider`` even where no CUDA library is
installed, and a session asked for it falls back to the CPU: the case a worker must
report truthfully and the one CI can exercise without a GPU. It cannot share an
environment with plain onnxruntime (both are the ``onnxruntime`` module), so
:func:`install_onnxruntime_gpu` installs it with ``pip --target`` into a folder of
its own; a subprocess with that folder first on ``PYTHONPATH`` imports the GPU build.
The ``onnxruntime_gpu_site`` fixture of crank's pytest plugin does this once per
machine (in the pytest cache).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

from crank.errors import DependencyMissing

_COMPLETE = ".complete"


def gpu_build_requirement() -> str:
    """``onnxruntime-gpu<=X``: the newest GPU build not newer than the installed onnxruntime.

    The GPU wheels of a release can come later than the CPU ones (a fresh CI once got
    onnxruntime 1.32.0 while the newest onnxruntime-gpu was 1.31.1); the subprocess
    imports the GPU build in place of the CPU one, so the two need not match exactly.
    """
    try:
        return f"onnxruntime-gpu<={metadata.version('onnxruntime')}"
    except metadata.PackageNotFoundError:
        return "onnxruntime-gpu"


def pip_install_target(target: Path, requirement: str) -> subprocess.CompletedProcess[str]:
    """``pip install --target TARGET --no-deps REQUIREMENT``, output captured."""
    argv = [
        sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
        "--no-deps", "--target", str(target), requirement,
    ]  # fmt: skip
    return subprocess.run(argv, capture_output=True, text=True, check=False)


def install_onnxruntime_gpu(cache_root: Path) -> Path:
    """A folder holding onnxruntime-gpu (installed once, without its dependencies).

    Raises :class:`~crank.errors.DependencyMissing` when pip cannot install it (no
    package index, no wheel for this platform).
    """
    requirement = gpu_build_requirement()
    site = cache_root / requirement.replace("<=", "-upto-")
    if (site / _COMPLETE).is_file():
        return site
    cache_root.mkdir(parents=True, exist_ok=True)
    # pip installs into a folder of this process's own, renamed into place whole: pip
    # --target skips what a folder already holds, so installing in place took the
    # half-copied package of an interrupted run, or of an xdist worker still copying,
    # for a whole one.
    staging = Path(tempfile.mkdtemp(prefix=f"{site.name}.", suffix=".partial", dir=cache_root))
    try:
        proc = pip_install_target(staging, requirement)
        if proc.returncode != 0:
            raise DependencyMissing(
                f"pip could not install {requirement}: {proc.stderr.strip()[-800:]}",
                hint="give pip a package index (PIP_INDEX_URL) or a folder of wheels "
                "(PIP_FIND_LINKS)",
                subject=requirement,
            )
        (staging / _COMPLETE).write_text(requirement, encoding="utf-8")
        if site.exists() and not (site / _COMPLETE).is_file():
            shutil.rmtree(site, ignore_errors=True)  # left by an older, in-place install
        try:
            staging.rename(site)
        except OSError:
            if not (site / _COMPLETE).is_file():
                raise
            # another process (an xdist worker) finished first: its copy is as good
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # nothing left after the rename
    return site


__all__ = ["gpu_build_requirement", "install_onnxruntime_gpu"]
