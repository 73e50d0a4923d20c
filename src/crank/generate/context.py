"""Values every artifact template shares, computed once from the project.

Shutdown timing is derived here, once, so the Dockerfile, compose, Kubernetes
and ``.env.example`` agree: ``crank run`` lets in-flight requests finish for up
to ``CRANK_GRACE_S`` (uvicorn), then gives its worker processes the same grace
plus 2 s, so a stop can take ``2 * grace + 2`` seconds; the platform must wait
longer than that before it kills the container.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import crank
from crank.generate.settings import load_settings

if TYPE_CHECKING:
    from collections.abc import Mapping

    from crank.generate.project import WorkerProject
    from crank.generate.settings import DeploySettings


@dataclass(frozen=True)
class PinnedImage:
    """An image by tag and, where its digest is known, by digest: ``repo:tag@sha256:...``."""

    repository: str
    tag: str
    digest: str = ""

    @property
    def ref(self) -> str:
        pinned = f"{self.repository}:{self.tag}"
        return f"{pinned}@{self.digest}" if self.digest else pinned


#: Bases pinned by tag and by the digest of the multi-platform index published for
#: that tag; update both together. The Dockerfile's BASE_IMAGE build argument (or
#: `crank build --base-image` / CRANK_BASE_IMAGE) replaces them, e.g. with a mirror.
PYTHON_BASE = PinnedImage(
    "python",
    "3.12.8-slim-bookworm",
    "sha256:2199a62885a12290dc9c5be3ca0681d367576ab7bf037da120e564723292a2f0",
)
#: CUDA 12 + cuDNN 9 runtime: what onnxruntime-gpu 1.19+ is built against.
GPU_BASE = PinnedImage(
    "nvidia/cuda",
    "12.6.3-cudnn-runtime-ubuntu24.04",
    "sha256:8aef630a54bc5c5146ae5ce68e6af5caa3df0fb690bb91544175c91f307e4356",
)
REDIS_IMAGE = PinnedImage(
    "redis",
    "7.4.1-alpine",
    "sha256:c1e88455c85225310bbea54816e9c3f4b5295815e6dbf80c34d40afc6df28275",
)
CUDA_VERSION = "12.6"
#: Python of the default bases (the CI's main version).
PYTHON_VERSION = "3.12"
#: Every Python the generated worker supports (requires-python >= 3.11): CI tests
#: each, and the wheelhouse holds wheels for each, whatever base the image uses.
PYTHON_VERSIONS = ("3.11", "3.12", "3.13")
HTTP_PORT = 8080
#: Numeric uid/gid the container runs as (numeric so runAsNonRoot can verify it).
RUNTIME_UID = 10001
#: The shortest grace crank gives in-flight tasks on SIGTERM (its own default).
MIN_GRACE_S = 10
#: Seconds a pod keeps serving after SIGTERM so load balancers stop sending to it.
PRESTOP_S = 5


@dataclass(frozen=True)
class Shutdown:
    """How long stopping a worker container may take, derived from its capabilities."""

    grace_s: int  # CRANK_GRACE_S: the longest capability timeout, at least MIN_GRACE_S

    @property
    def stop_s(self) -> int:
        """Seconds `crank run` may need after SIGTERM: requests, then processes, + slack."""
        return 2 * self.grace_s + 2 + 3

    @property
    def termination_grace_s(self) -> int:
        """Kubernetes' terminationGracePeriodSeconds: the preStop pause, then the stop."""
        return PRESTOP_S + self.stop_s


def shutdown(project: WorkerProject) -> Shutdown:
    longest = max((cap.timeout_s for cap in project.manifest.capabilities), default=0.0)
    return Shutdown(max(MIN_GRACE_S, math.ceil(longest)))


def crank_version() -> str:
    return crank.__version__


def settings_of(project: WorkerProject) -> DeploySettings:

    return load_settings(project.root / "pyproject.toml")


def apt_packages(project: WorkerProject) -> list[str]:
    """Debian packages of the manifest's system dependencies, sorted, unique."""
    return sorted({dep.apt for dep in project.manifest.dependencies.system if dep.apt})


def labels(project: WorkerProject) -> str:
    """Kubernetes recommended labels as a one-line YAML mapping."""
    md = project.manifest.metadata
    return (
        f'{{app.kubernetes.io/name: {md.name}, app.kubernetes.io/version: "{md.version}", '
        "app.kubernetes.io/managed-by: crank}"
    )


def cpu_cores(quantity: str) -> float:
    """A Kubernetes CPU quantity ("500m", "2") in cores."""
    return int(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def pod_processes(project: WorkerProject) -> int:
    """Worker processes in one pod or container: one per requested core (at least one).

    On Kubernetes the autoscaler adds pods (``max_workers`` bounds the pods), so a
    pod runs only what its CPU request pays for; a GPU pod runs one (one GPU each).
    """
    if project.manifest.worker.resources.gpu == "required":
        return 1
    return max(1, math.floor(cpu_cores(project.manifest.worker.resources.cpu)))


def common_context(project: WorkerProject) -> Mapping[str, Any]:
    manifest = project.manifest
    scaling = manifest.worker.scaling
    settings = settings_of(project)
    stop = shutdown(project)
    return {
        "worker_name": manifest.name,
        "worker_version": manifest.metadata.version,
        "license": manifest.metadata.license or "",
        "image_name": manifest.name,
        "manifest_relpath": project.manifest_relpath,
        "package": project.package,
        "capability_ids": list(manifest.capability_ids),
        "apt_packages": apt_packages(project),
        "gpu": manifest.worker.resources.gpu,
        "gpu_required": manifest.worker.resources.gpu == "required",
        "resources": manifest.worker.resources,
        "min_replicas": scaling.min_workers,
        "max_replicas": max(scaling.max_workers, scaling.min_workers, 1),
        "target_queue": scaling.target_queue_per_worker,
        "pod_processes": pod_processes(project),
        "labels": labels(project),
        "crank_version": crank_version(),
        "python_version": PYTHON_VERSION,
        "python_versions": list(PYTHON_VERSIONS),
        "base_image": (GPU_BASE if manifest.worker.resources.gpu == "required" else PYTHON_BASE),
        "cuda_version": CUDA_VERSION,
        "port": HTTP_PORT,
        "uid": RUNTIME_UID,
        "settings": settings,
        "grace_s": stop.grace_s,
        "stop_s": stop.stop_s,
        "termination_grace_s": stop.termination_grace_s,
        "prestop_s": PRESTOP_S,
    }
