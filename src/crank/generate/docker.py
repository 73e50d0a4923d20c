"""Dockerfile and .dockerignore renderers."""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING, Any

from crank import DISTRIBUTION
from crank.generate.context import apt_packages, crank_version
from crank.generate.render import TemplateRenderer

if TYPE_CHECKING:
    from collections.abc import Mapping

    from crank.generate.project import WorkerProject

#: Folder of the build context where ``crank build`` puts the crank wheel.
WHEELS_DIR = "crank-wheels"


def dockerfile_context(project: WorkerProject) -> Mapping[str, Any]:
    requirements = [f"{DISTRIBUTION}=={crank_version()}", *project.manifest.dependencies.python]
    gpu_required = project.manifest.worker.resources.gpu == "required"
    return {
        "pip_requirements": " ".join(shlex.quote(r) for r in requirements),
        "runtime_apt_packages": (["python3"] if gpu_required else []) + apt_packages(project),
    }


DOCKERFILE = TemplateRenderer(
    name="dockerfile",
    description="Multi-stage, non-root Dockerfile with HEALTHCHECK and the manifest's packages.",
    files=(("Dockerfile", "Dockerfile.j2"),),
    context_extra=dockerfile_context,
)

DOCKERIGNORE = TemplateRenderer(
    name="dockerignore",
    description=".dockerignore keeping the build context small and free of secrets.",
    files=((".dockerignore", "dockerignore.j2"),),
)
