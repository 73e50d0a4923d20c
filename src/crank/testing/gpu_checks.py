"""GPU checkers: ``gpu`` / ``nvidia-gpu`` (NVML, else ``nvidia-smi -L``) and
``onnxruntime:PROVIDER`` (a session really gets the provider)."""

from __future__ import annotations

import contextlib
import difflib
import importlib
import shutil
import subprocess
from dataclasses import dataclass
from typing import Any

from crank.errors import UsageError
from crank.testing.dependencies import DependencyResult
from crank.testing.onnx_providers import probe_provider
from crank.testing.python_checks import check_module, import_for_check
from crank.testing.specs import DependencySpec
from crank.testing.system_checks import exit_description, run_tool

GPU_HINT = "run on a machine with an NVIDIA GPU and its driver (nvidia-smi -L must list it)"


@dataclass(frozen=True)
class GpuDetection:
    """What NVML or nvidia-smi said. ``broken`` carries the failure of an installed tool."""

    devices: tuple[str, ...]
    source: str
    detail: str
    broken: BaseException | str | None = None

    @property
    def found(self) -> bool:
        return bool(self.devices)


def detect_nvidia_gpus() -> GpuDetection:
    """NVIDIA GPUs through ``pynvml`` when importable, else ``nvidia-smi -L``."""
    try:
        pynvml: Any = importlib.import_module("pynvml")
    except ModuleNotFoundError:
        return _detect_with_nvidia_smi()
    except Exception as exc:  # installed but unusable
        return GpuDetection((), "pynvml", f"pynvml failed to import: {exc}", broken=exc)
    try:
        pynvml.nvmlInit()
    except Exception as exc:
        if getattr(exc, "value", None) == getattr(pynvml, "NVML_ERROR_LIBRARY_NOT_FOUND", 12):
            # no NVIDIA driver library: pynvml (often a pip dependency) knows no more than
            # without it, so the machine answers as it would without pynvml
            return _detect_with_nvidia_smi(f"NVML could not initialise ({exc})")
        # the driver is installed but fails (not loaded, no permission...): broken, as
        # nvidia-smi failing is
        detail = f"NVML could not initialise: {exc}"
        return GpuDetection((), "pynvml", detail, broken=exc)
    try:
        count = int(pynvml.nvmlDeviceGetCount())
        names = tuple(
            _text(pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(i)))
            for i in range(count)
        )
    except Exception as exc:
        return GpuDetection((), "pynvml", f"NVML failed to list devices: {exc}", broken=exc)
    finally:
        # shutting down a half-initialised NVML must not hide the answer
        with contextlib.suppress(Exception):
            pynvml.nvmlShutdown()
    detail = f"NVML lists {count} GPU(s)" if names else "NVML lists no GPU"
    return GpuDetection(names, "pynvml", detail)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _detect_with_nvidia_smi(why_not_nvml: str = "pynvml is not installed") -> GpuDetection:
    path = shutil.which("nvidia-smi")
    if path is None:
        return GpuDetection((), "nvidia-smi", f"{why_not_nvml} and nvidia-smi is not on PATH")
    try:
        proc = run_tool([path, "-L"])
    except (OSError, subprocess.TimeoutExpired) as exc:
        return GpuDetection((), "nvidia-smi", f"`nvidia-smi -L` failed: {exc}", broken=exc)
    if proc.returncode != 0:
        output = (proc.stdout + proc.stderr).strip()
        detail = f"`{path} -L` {exit_description(proc.returncode)}: {output[:300]}"
        return GpuDetection((), "nvidia-smi", detail, broken=detail)
    devices = tuple(
        line.split(":", 1)[1].split("(UUID", 1)[0].strip()
        for line in proc.stdout.splitlines()
        if line.startswith("GPU ") and ":" in line
    )
    detail = (
        f"nvidia-smi -L lists {len(devices)} GPU(s)" if devices else "nvidia-smi -L lists no GPU"
    )
    return GpuDetection(devices, "nvidia-smi", detail)


def check_gpu(spec: DependencySpec) -> DependencyResult:
    """``gpu`` and ``nvidia-gpu``: at least one NVIDIA GPU answers."""
    check_gpu_spec(spec)
    found = detect_nvidia_gpus()
    if found.broken is not None:
        return DependencyResult.failing(
            spec, found.detail, error=found.broken, hint="check the NVIDIA driver installation"
        )
    if not found.found:
        return DependencyResult.missing(spec, f"no NVIDIA GPU: {found.detail}", hint=GPU_HINT)
    return DependencyResult.found(spec, reason=f"{found.detail}: {', '.join(found.devices)}")


GPU_KINDS = ("gpu", "nvidia-gpu")


def check_gpu_spec(spec: DependencySpec) -> None:
    """A ``gpu`` spec is written alone (crank lint asks the same of a manifest's checks)."""
    if spec.kind in GPU_KINDS and (spec.constraint is not None or spec.target is not None):
        # a GPU has no version to compare and no sub-capability: such a spec could never
        # be met, so it would skip even on the machine the test is meant for
        written = spec.constraint or f":{spec.target}"
        raise UsageError(
            f"dependency spec {spec.raw!r}: {spec.kind} takes no {written!r}",
            hint=f"write '{spec.kind}' alone; for a CUDA build or version, ask for "
            "'onnxruntime:CUDAExecutionProvider', 'torch.cuda' or 'dist:NAME>=VERSION'",
            subject=spec.raw,
        )


def provider_hint(provider: str) -> str:
    if provider in ("CUDAExecutionProvider", "TensorrtExecutionProvider"):
        return (
            "pip install onnxruntime-gpu, with the CUDA and cuDNN libraries it needs, "
            "on a machine with an NVIDIA GPU"
        )
    return f"install an onnxruntime build that includes {provider}"


def check_onnxruntime(spec: DependencySpec) -> DependencyResult:
    """``onnxruntime`` (the module) or ``onnxruntime:PROVIDER`` (a session really uses it)."""

    if spec.target is None:
        return check_module(
            DependencySpec(
                raw=spec.raw,
                kind=spec.kind,
                name="onnxruntime",
                target="onnxruntime",
                constraint=spec.constraint,
            )
        )
    provider = spec.target
    hint = provider_hint(provider)
    imported = import_for_check(spec, "onnxruntime", hint)
    if isinstance(imported, DependencyResult):
        return imported

    version = str(getattr(imported, "__version__", "")) or None
    _check_provider_name(spec, provider, imported)
    try:
        probe = probe_provider(provider, imported)
    except Exception as exc:  # onnxruntime is there but cannot create a session at all
        return DependencyResult.failing(
            spec,
            f"onnxruntime {version} cannot create a session: {type(exc).__name__}: {exc}",
            error=exc,
            hint="pip install --force-reinstall onnxruntime",
            version=version,
        )
    if probe.usable:
        return DependencyResult.found(spec, version=version, reason=probe.explanation())
    return DependencyResult.missing(spec, probe.explanation(), hint=hint, version=version)


def _check_provider_name(spec: DependencySpec, provider: str, ort: Any) -> None:
    """A provider no onnxruntime build has is a misspelling: an error, not a skip that
    would hold even on the machine the test is meant for."""
    known_providers = getattr(ort, "get_all_providers", None)
    if not callable(known_providers):
        return
    known = [str(name) for name in known_providers()]
    if provider in known:
        return
    folded = provider.lower()
    close = [name for name in known if folded in name.lower()] or difflib.get_close_matches(
        provider, known, n=1, cutoff=0.6
    )
    raise UsageError(
        f"dependency spec {spec.raw!r}: onnxruntime knows no provider {provider!r}",
        hint=f"did you mean 'onnxruntime:{close[0]}'?"
        if close
        else f"its providers: {', '.join(known)}",
        subject=spec.raw,
    )
