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

import subprocess
import sys
from importlib import metadata
from typing import TYPE_CHECKING

from crank.errors import DependencyMissing

if TYPE_CHECKING:
    from pathlib import Path

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


def install_onnxruntime_gpu(cache_root: Path) -> Path:
    """A folder holding onnxruntime-gpu (installed once, without its dependencies).

    Raises :class:`~crank.errors.DependencyMissing` when pip cannot install it (no
    package index, no wheel for this platform).
    """
    requirement = gpu_build_requirement()
    site = cache_root / requirement.replace("<=", "-upto-")
    if (site / _COMPLETE).is_file():
        return site
    argv = [
        sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
        "--no-deps", "--target", str(site), requirement,
    ]  # fmt: skip
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise DependencyMissing(
            f"pip could not install {requirement}: {proc.stderr.strip()[-800:]}",
            hint="give pip a package index (PIP_INDEX_URL) or a folder of wheels (PIP_FIND_LINKS)",
            subject=requirement,
        )
    (site / _COMPLETE).write_text(requirement, encoding="utf-8")
    return site


__all__ = ["gpu_build_requirement", "install_onnxruntime_gpu"]
