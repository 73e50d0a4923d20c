"""Values every artifact template shares, computed once from the project.

Shutdown timing is derived here, once, so the Dockerfile, compose, Kubernetes
and ``.env.example`` agree: ``crank run`` lets in-flight requests finish for up
to ``CRANK_GRACE_S`` (uvicorn), then gives its worker processes the same grace
plus 2 s, so a stop can take ``2 * grace + 2`` seconds; the platform must wait
longer than that before it kills the container.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import crank
from crank.errors import GenerateError
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


#: A Docker image tag, and a Kubernetes label value (at most 63 characters).
_IMAGE_TAG = re.compile(r"[\w][\w.-]{0,127}")
_LABEL_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?")


def image_tag(version: str) -> str:
    """The worker version as an image tag: semver's ``+`` (build metadata), which no
    tag may hold, as ``_`` (``1.0.0+build.5`` -> ``1.0.0_build.5``)."""
    tag = version.replace("+", "_")
    if not _IMAGE_TAG.fullmatch(tag):
        raise GenerateError(
            f"version {version!r} makes the image tag {tag!r}, longer than Docker's 128 characters",
            hint="shorten the version's pre-release or build part (metadata.version)",
            subject=version,
        )
    return tag


def version_label(version: str) -> str:
    """The worker version as the value of the ``app.kubernetes.io/version`` label."""
    value = image_tag(version)
    if not _LABEL_VALUE.fullmatch(value):
        raise GenerateError(
            f"version {version!r} cannot be a Kubernetes label value ({value!r}: at most "
            "63 letters, digits, '-', '_' or '.', beginning and ending with a letter or digit)",
            hint="shorten the version's pre-release or build part (metadata.version)",
            subject=version,
        )
    return value


def labels(project: WorkerProject) -> str:
    """Kubernetes recommended labels as a one-line YAML mapping."""
    md = project.manifest.metadata
    version = version_label(md.version)
    return (
        f'{{app.kubernetes.io/name: {md.name}, app.kubernetes.io/version: "{version}", '
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
        "image_tag": image_tag(manifest.metadata.version),
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
