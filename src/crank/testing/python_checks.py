"""Checkers for Python things: modules, distributions, sub-capabilities (``torch.cuda``).

Missing versus broken: a module that is not installed is *missing*
(``ModuleNotFoundError`` naming the module itself). Any other import failure is
*broken*: an ``ImportError`` that is not ``ModuleNotFoundError`` (a missing shared
library, an ABI clash), a ``ModuleNotFoundError`` for one of the module's own
dependencies, or any other exception raised while importing.
"""

from __future__ import annotations

import importlib
from importlib import metadata
from typing import TYPE_CHECKING, Any

from crank.testing.dependencies import DependencyResult
from crank.testing.specs import unmet_constraint

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import ModuleType

    from crank.testing.specs import DependencySpec

#: Import names whose pip distribution is named differently (used for hints only).
DISTRIBUTION_OF_MODULE = {
    "bs4": "beautifulsoup4",
    "cv2": "opencv-python",
    "PIL": "pillow",
    "pynvml": "nvidia-ml-py",
    "skimage": "scikit-image",
    "sklearn": "scikit-learn",
    "yaml": "PyYAML",
}
#: other distributions that install the same module, which a manifest may declare
#: instead (a worker's image takes the headless OpenCV, or onnxruntime's GPU build)
OTHER_DISTRIBUTIONS_OF_MODULE = {
    "cv2": ("opencv-python-headless", "opencv-contrib-python", "opencv-contrib-python-headless"),
    "onnxruntime": ("onnxruntime-gpu", "onnxruntime-directml", "onnxruntime-openvino"),
    "PIL": ("pillow-simd",),
}


def pip_hint(module_name: str, constraint: str | None = None) -> str:
    top = module_name.partition(".")[0]
    dist = DISTRIBUTION_OF_MODULE.get(top, top)
    requirement = f"'{dist}{constraint}'" if constraint else dist
    return f"pip install {requirement}"


def _reinstall(pip_install: str) -> str:
    return pip_install.replace("pip install ", "pip install --force-reinstall ", 1)


def module_version(module: ModuleType, name: str) -> str | None:
    """``__version__`` of the top-level module, else the version of its distribution."""
    top = name.partition(".")[0]
    root = importlib.import_module(top) if top != name else module
    version = getattr(root, "__version__", None)
    if isinstance(version, str):
        return version
    for dist in metadata.packages_distributions().get(top, ()):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return None


def import_for_check(
    spec: DependencySpec, module_name: str, hint: str
) -> ModuleType | DependencyResult:
    """Import ``module_name``; a result (missing or broken) when that fails."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing_name = exc.name or ""
        if missing_name and (
            module_name == missing_name or module_name.startswith(missing_name + ".")
        ):
            return DependencyResult.missing(
                spec, f"Python module {module_name!r} is not installed", hint=hint
            )
        return DependencyResult.failing(
            spec,
            f"Python module {module_name!r} is installed but importing it failed: "
            f"{type(exc).__name__}: {exc}",
            error=exc,
            hint=f"pip install {missing_name}, which {module_name} imports"
            if missing_name
            else _reinstall(hint),
        )
    except ImportError as exc:
        return DependencyResult.failing(
            spec,
            f"Python module {module_name!r} is installed but importing it failed: "
            f"{type(exc).__name__}: {exc}",
            error=exc,
            hint=f"{_reinstall(hint)}, or install the native libraries it needs",
        )
    except Exception as exc:  # anything raised at import time means "installed but broken"
        return DependencyResult.failing(
            spec,
            f"Python module {module_name!r} raised {type(exc).__name__} on import: {exc}",
            error=exc,
            hint=_reinstall(hint),
        )
    except SystemExit as exc:  # would end the test run (or a worker's self-test)
        return DependencyResult.failing(
            spec,
            f"Python module {module_name!r} called sys.exit() on import: {exc}",
            error=exc,
            hint=_reinstall(hint),
        )


def check_module(spec: DependencySpec) -> DependencyResult:
    """``numpy``, ``numpy>=1.26``, ``module:torch.cuda``; sub-capabilities are probed."""
    name = spec.target or spec.name
    hint = pip_hint(name, spec.constraint)
    imported = import_for_check(spec, name, hint)
    if isinstance(imported, DependencyResult):
        return imported
    version = module_version(imported, name)
    unmet = unmet_constraint(name, version, spec.constraint)
    if unmet is not None:
        return DependencyResult.missing(spec, unmet, hint=hint, version=version)
    probe = SUB_CAPABILITIES.get(name)
    if probe is not None:
        return probe(spec, imported, version)
    return DependencyResult.found(spec, version=version, reason=f"{name} {version or ''}".strip())


def check_distribution(spec: DependencySpec) -> DependencyResult:
    """``dist:nvidia-ml-py>=12``: an installed pip distribution (no import)."""
    name = spec.target or spec.name
    requirement = f"'{name}{spec.constraint}'" if spec.constraint else name
    hint = f"pip install {requirement}"
    try:
        version = metadata.version(name)
    except metadata.PackageNotFoundError:
        return DependencyResult.missing(
            spec, f"Python distribution {name!r} is not installed", hint=hint
        )
    unmet = unmet_constraint(name, version, spec.constraint)
    if unmet is not None:
        return DependencyResult.missing(spec, unmet, hint=hint, version=version)
    return DependencyResult.found(spec, version=version, reason=f"{name} {version}")


TORCH_CUDA_HINT = (
    "install a CUDA build of PyTorch (https://pytorch.org/get-started/locally/) "
    "on a machine with an NVIDIA GPU and driver"
)


def probe_torch_cuda(
    spec: DependencySpec, module: ModuleType, version: str | None
) -> DependencyResult:
    """CUDA is usable only if a tensor can really be put on the device."""
    torch: Any = importlib.import_module("torch")
    if not torch.cuda.is_available():
        build = getattr(getattr(torch, "version", None), "cuda", None)
        if build is None:
            reason = f"torch {version or ''} is a CPU-only build (torch.version.cuda is None)"
        else:
            reason = (
                f"torch {version or ''} is built for CUDA {build} but sees no usable CUDA device"
            )
        return DependencyResult.missing(
            spec, " ".join(reason.split()), hint=TORCH_CUDA_HINT, version=version
        )
    try:
        torch.zeros(1, device="cuda").add_(1)
        torch.cuda.synchronize()
        device = str(torch.cuda.get_device_name(0))
    except Exception as exc:  # listed but unusable: that is broken, not missing
        return DependencyResult.failing(
            spec,
            f"torch reports CUDA available but a tensor op on the device failed: "
            f"{type(exc).__name__}: {exc}",
            error=exc,
            hint="check the NVIDIA driver and that torch's CUDA version matches it",
            version=version,
        )
    return DependencyResult.found(spec, version=version, reason=f"torch.cuda on {device}")


#: Dotted module names whose availability means more than "it imports".
SUB_CAPABILITIES: dict[
    str, Callable[[DependencySpec, ModuleType, str | None], DependencyResult]
] = {
    "torch.cuda": probe_torch_cuda,
}
