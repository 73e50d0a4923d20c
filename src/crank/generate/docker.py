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

#: Folder of the build context where ``crank build`` stages the wheels the image
#: installs: ``deps/`` (requirements.lock's), ``crank/`` and ``worker/``.
WHEELS_DIR = "crank-wheels"


def project_distribution(project: WorkerProject) -> tuple[str, str]:
    """The worker's distribution name and version, from pyproject.toml (else the manifest)."""
    import tomllib

    pyproject = project.root / "pyproject.toml"
    try:
        meta = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project", {})
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        meta = {}
    name = meta.get("name") if isinstance(meta.get("name"), str) else None
    version = meta.get("version") if isinstance(meta.get("version"), str) else None
    return name or project.manifest.name, version or project.manifest.metadata.version


def dockerfile_string(text: str) -> str:
    """``text`` as the inside of a double-quoted Dockerfile string: a quote, a backslash
    or a ``$`` (variable substitution) escaped, line breaks (which would end the
    instruction) as spaces."""
    text = " ".join(text.splitlines())
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")


def dockerfile_context(project: WorkerProject) -> Mapping[str, Any]:
    gpu_required = project.manifest.worker.resources.gpu == "required"
    name, version = project_distribution(project)
    return {
        "license_label": dockerfile_string(project.manifest.metadata.license or ""),
        "crank_requirement": shlex.quote(f"{DISTRIBUTION}=={crank_version()}"),
        "worker_requirement": shlex.quote(f"{name}=={version}"),
        "runtime_apt_packages": (["python3"] if gpu_required else []) + apt_packages(project),
    }


DOCKERFILE = TemplateRenderer(
    name="dockerfile",
    description="Multi-stage, non-root Dockerfile installing the locked wheels offline, "
    "with an init, HEALTHCHECK and the manifest's packages.",
    files=(("Dockerfile", "Dockerfile.j2"),),
    context_extra=dockerfile_context,
)

DOCKERIGNORE = TemplateRenderer(
    name="dockerignore",
    description=".dockerignore letting only the lock and the staged wheels into the context.",
    files=((".dockerignore", "dockerignore.j2"),),
)
