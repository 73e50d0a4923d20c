"""GPU test strategy: full_gpu, mock_gpu or cpu_fallback, with the evidence that decided it.

``full_gpu`` is chosen only after real work ran on the GPU: an onnxruntime session
asked for ``CUDAExecutionProvider`` must get it (onnxruntime-gpu lists CUDA and
silently falls back to CPU when the CUDA libraries are missing) *and* a profiled run
of a small model must show every node executed by it
(:func:`crank.testing.onnx_providers.probe_provider`); without onnxruntime, a torch
tensor must really live on the device.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from importlib import metadata
from typing import TYPE_CHECKING, Literal, cast

from crank.errors import UsageError
from crank.testing.dependencies import check_dependency
from crank.testing.gpu_checks import detect_nvidia_gpus
from crank.testing.onnx_providers import probe_provider
from crank.testing.strict import is_ci

if TYPE_CHECKING:
    from collections.abc import Mapping

StrategyName = Literal["full_gpu", "mock_gpu", "cpu_fallback"]
STRATEGIES: tuple[StrategyName, ...] = ("full_gpu", "mock_gpu", "cpu_fallback")
STRATEGY_ENV = "CRANK_GPU_STRATEGY"


@dataclass(frozen=True)
class GpuStrategy:
    """The chosen strategy; ``providers`` are those a verification session used."""

    name: StrategyName
    evidence: tuple[str, ...]
    providers: tuple[str, ...] = ()
    verified: bool = False
    requested: str = "auto"

    @property
    def uses_gpu(self) -> bool:
        return self.name == "full_gpu" and self.verified

    def describe(self) -> str:
        return f"{self.name}: " + "; ".join(self.evidence)


@dataclass(frozen=True)
class SessionCheck:
    ok: bool
    providers: tuple[str, ...]
    evidence: str


def verify_gpu_session() -> SessionCheck:
    """Run a tiny model on the GPU and report which provider really ran its nodes."""
    try:
        import onnxruntime
    except ModuleNotFoundError:
        onnxruntime = None
    except Exception as exc:  # installed but broken: say so, do not claim a GPU
        return SessionCheck(False, (), f"onnxruntime fails to import: {type(exc).__name__}: {exc}")
    if onnxruntime is not None:
        try:
            probe = probe_provider("CUDAExecutionProvider", onnxruntime)
        except Exception as exc:
            return SessionCheck(
                False, (), f"onnxruntime cannot create a session: {type(exc).__name__}: {exc}"
            )
        return SessionCheck(probe.usable, probe.in_use, probe.explanation())
    if importlib.util.find_spec("torch") is None:
        return SessionCheck(
            False, (), "neither onnxruntime nor torch is installed to run a GPU session"
        )
    result = check_dependency("torch.cuda")
    if result.available:
        return SessionCheck(True, ("torch.cuda",), f"torch: {result.reason}")
    return SessionCheck(False, (), f"torch: {result.reason}")


def _installed(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def resolve_request(requested: str | None, environ: Mapping[str, str]) -> tuple[str, str]:
    """``(strategy or 'auto', where it came from)``; unknown names are a usage error."""
    if requested and requested.strip():  # blank is not given, as for the variable
        value, source = requested, f"--crank-gpu-strategy={requested}"
    elif environ.get(STRATEGY_ENV, "").strip():  # blank is unset, as for CRANK_REQUIRE
        value, source = environ[STRATEGY_ENV], f"{STRATEGY_ENV}={environ[STRATEGY_ENV]}"
    else:
        value, source = "auto", "auto"
    value = value.strip()
    if value != "auto" and value not in STRATEGIES:
        raise UsageError(
            f"unknown GPU strategy {value!r} ({source})",
            hint=f"use one of: auto, {', '.join(STRATEGIES)}",
            subject=value,
        )
    return value, source


def select_gpu_strategy(
    requested: str | None = None, *, environ: Mapping[str, str] | None = None
) -> GpuStrategy:
    """Choose how GPU code paths are tested here.

    :param requested: ``auto`` (default), or a strategy to force; falls back to
        the ``CRANK_GPU_STRATEGY`` environment variable.
    """
    env = os.environ if environ is None else environ
    value, source = resolve_request(requested, env)
    if value in ("mock_gpu", "cpu_fallback"):
        return GpuStrategy(cast("StrategyName", value), (f"forced by {source}",), requested=value)

    evidence: list[str] = []
    if value == "full_gpu":
        evidence.append(f"forced by {source}")
    gpus = detect_nvidia_gpus()
    evidence.append(f"{gpus.detail}: {', '.join(gpus.devices)}" if gpus.devices else gpus.detail)
    providers: tuple[str, ...] = ()
    if value == "full_gpu" or gpus.found:
        check = verify_gpu_session()
        providers = check.providers
        evidence.append(check.evidence)
        if check.ok:
            return GpuStrategy("full_gpu", tuple(evidence), providers, True, value)
        if value == "full_gpu":
            evidence.append("full_gpu NOT verified: tests using gpu_strategy fail")
            return GpuStrategy("full_gpu", tuple(evidence), providers, False, value)
    elif _installed("onnxruntime-gpu") is not None:
        # The build that lies about CUDA is installed: show what a session really gets.
        check = verify_gpu_session()
        providers = check.providers
        evidence.append(check.evidence)
    if is_ci(env):
        evidence.append(f"CI={env.get('CI')}: GPU code paths run against mocks")
        return GpuStrategy("mock_gpu", tuple(evidence), providers, False, value)
    evidence.append("not in CI: GPU code paths run on the CPU")
    return GpuStrategy("cpu_fallback", tuple(evidence), providers, False, value)
