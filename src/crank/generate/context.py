"""Values every artifact template shares, computed once from the project."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping

    from crank.generate.project import WorkerProject

#: Pinned bases: a full version tag, overridable with the BASE_IMAGE build arg.
PYTHON_BASE_IMAGE = "python:3.12.8-slim-bookworm"
#: CUDA 12 + cuDNN 9 runtime: what onnxruntime-gpu 1.19+ is built against.
GPU_BASE_IMAGE = "nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04"
CUDA_VERSION = "12.6"
PYTHON_VERSION = "3.12"
HTTP_PORT = 8080
#: Numeric uid/gid the container runs as (numeric so runAsNonRoot can verify it).
RUNTIME_UID = 10001


def crank_version() -> str:
    import crank

    return crank.__version__


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


def common_context(project: WorkerProject) -> Mapping[str, Any]:
    manifest = project.manifest
    scaling = manifest.worker.scaling
    return {
        "worker_name": manifest.name,
        "worker_version": manifest.metadata.version,
        "image_name": manifest.name,
        "digest": manifest.digest(),
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
        "labels": labels(project),
        "crank_version": crank_version(),
        "python_version": PYTHON_VERSION,
        "python_base_image": PYTHON_BASE_IMAGE,
        "gpu_base_image": GPU_BASE_IMAGE,
        "cuda_version": CUDA_VERSION,
        "port": HTTP_PORT,
        "uid": RUNTIME_UID,
    }
