"""``crank build``: build a worker's image with the Docker SDK, labelled from its manifest.

crank itself is not on a package index, so the build context gets a wheel of the
running crank (see :mod:`crank.generate.wheel`, or one given with ``--crank-wheel``)
in ``crank-wheels/``; the rendered Dockerfile installs crank from there, so the
image runs the crank version of the host.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crank.errors import BuildFailed, DockerUnavailable, GenerateError
from crank.generate.docker import WHEELS_DIR
from crank.generate.wheel import build_crank_wheel

if TYPE_CHECKING:
    from crank.generate.project import WorkerProject

Progress = Callable[[str], None]
DOCKER_API_VERSION = "1.41"


@dataclass(frozen=True)
class BuiltImage:
    tag: str
    image_id: str
    size_bytes: int
    labels: dict[str, str]


def image_labels(project: WorkerProject) -> dict[str, str]:
    """OCI labels plus crank's own: manifest digest, capabilities, crank version."""
    from crank.generate.context import crank_version
    from crank.generate.templates import template_version

    md = project.manifest.metadata
    labels = {
        "org.opencontainers.image.title": md.name,
        "org.opencontainers.image.version": md.version,
        "org.opencontainers.image.description": md.description,
        "org.opencontainers.image.licenses": md.license or "",
        "crank.manifest.digest": project.manifest.digest(),
        "crank.capabilities": ",".join(project.manifest.capability_ids),
        "crank.version": crank_version(),
        "crank.template.version": template_version(),
    }
    return {k: v for k, v in labels.items() if v}


def _unix_socket_problem(path: str) -> str | None:
    import socket

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        try:
            sock.connect(path)
        except OSError as exc:
            return exc.strerror or str(exc)
    return None


def docker_client() -> Any:
    """A Docker SDK client that has answered a ping, or DockerUnavailable."""
    import docker
    from docker.errors import DockerException
    from requests.exceptions import RequestException

    where = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    hint = "start the Docker daemon (dockerd) or point DOCKER_HOST at a running one"
    if where.startswith("unix://"):
        # docker-py leaks the socket of a failed unix connect; probe it ourselves first.
        problem = _unix_socket_problem(where.removeprefix("unix://"))
        if problem:
            raise DockerUnavailable(
                f"no Docker engine answers at {where} ({problem})", hint=hint, subject=where
            )
    client = None
    try:
        # A fixed API version (Docker 20.10+) keeps the constructor from connecting, so a
        # failed ping leaves a client we can close (no leaked socket).
        client = docker.from_env(version=DOCKER_API_VERSION)
        client.ping()
    except (DockerException, RequestException) as exc:
        if client is not None:
            client.close()
        raise DockerUnavailable(
            f"no Docker engine answers at {where} ({exc})",
            hint=hint,
            subject=where,
        ) from None
    return client


class _StagedWheel:
    """Puts the crank wheel into ``<project>/crank-wheels`` for one build, then tidies up."""

    def __init__(self, project: WorkerProject, wheel: Path | None) -> None:
        self.dir = project.root / WHEELS_DIR
        self.wheel = wheel
        self.created_dir = False
        self.placed: Path | None = None
        self.tmp: str | None = None

    def __enter__(self) -> Path:
        if self.wheel is None:
            self.tmp = tempfile.mkdtemp(prefix="crank-wheel-")
            self.wheel = build_crank_wheel(Path(self.tmp))
        elif not self.wheel.is_file() or not self.wheel.name.endswith(".whl"):
            raise GenerateError(
                f"{self.wheel}: not a wheel file",
                hint="pass a crank_workers-*.whl to --crank-wheel",
            )
        if not self.dir.exists():
            self.dir.mkdir()
            self.created_dir = True
        target = self.dir / self.wheel.name
        if not target.exists():
            shutil.copy2(self.wheel, target)
            self.placed = target
        return target

    def __exit__(self, *exc: object) -> None:
        if self.placed is not None:
            self.placed.unlink(missing_ok=True)
        if self.created_dir:
            shutil.rmtree(self.dir, ignore_errors=True)
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)


def dockerfile_base(project: WorkerProject) -> str:
    """The base image the project's Dockerfile names by default (``ARG BASE_IMAGE=``)."""
    text = (project.root / "Dockerfile").read_text(encoding="utf-8", errors="replace")
    match = re.search(r"^ARG\s+BASE_IMAGE=(\S+)", text, re.MULTILINE)
    return match.group(1) if match else ""


def _failure_hint(client: Any, error: str, base: str) -> str:
    """What to do about a failed build; a base image that is neither here nor pullable
    (no registry reachable, an air-gapped network) gets its own advice."""
    from docker.errors import DockerException

    try:
        have_base = bool(base) and bool(client.images.get(base))
    except DockerException:
        have_base = False
    if base and not have_base and (base in error or "pull" in error or "registry" in error):
        return (
            f"the base image {base} is not on this machine and could not be pulled; "
            f"pull or build it (docker pull {base}), or name one this Docker has, e.g. "
            "from a mirror, with --base-image IMAGE or CRANK_BASE_IMAGE=IMAGE"
        )
    return "the lines above show the failing step; fix it and run crank build again"


def build_image(
    project: WorkerProject,
    *,
    tag: str | None = None,
    base_image: str | None = None,
    crank_wheel: Path | None = None,
    progress: Progress | None = None,
) -> BuiltImage:
    """Build the project's Dockerfile; ``progress`` receives every line of build output."""
    if not (project.root / "Dockerfile").is_file():
        raise GenerateError(
            f"{project.root}: no Dockerfile",
            hint="render it with `crank check --fix` (or `crank render dockerfile -o Dockerfile`)",
            subject=str(project.root),
        )
    client = docker_client()
    try:
        return _build(client, project, tag, base_image, crank_wheel, progress)
    finally:
        client.close()


def _build(
    client: Any,
    project: WorkerProject,
    tag: str | None,
    base_image: str | None,
    crank_wheel: Path | None,
    progress: Progress | None,
) -> BuiltImage:
    tag = tag or f"{project.manifest.name}:{project.manifest.metadata.version}"
    labels = image_labels(project)
    buildargs = {"BASE_IMAGE": base_image} if base_image else {}
    tail: list[str] = []
    image_id = ""
    with _StagedWheel(project, crank_wheel):
        stream = client.api.build(
            path=str(project.root),
            tag=tag,
            labels=labels,
            buildargs=buildargs,
            decode=True,
            rm=True,
            forcerm=True,
            pull=False,
        )
        for chunk in stream:
            if "error" in chunk:
                error = str(chunk["error"]).strip()
                raise BuildFailed(
                    f"building {tag} failed: {error}",
                    hint=_failure_hint(client, error, base_image or dockerfile_base(project)),
                    subject=tag,
                    log=tuple(tail[-30:]),
                )
            line = str(chunk.get("stream", "")).rstrip("\n")
            if line:
                tail.append(line)
                if progress is not None:
                    progress(line)
            aux = chunk.get("aux")
            if isinstance(aux, dict) and "ID" in aux:
                image_id = str(aux["ID"])
    image = client.images.get(image_id or tag)
    return BuiltImage(tag, image.id, int(image.attrs.get("Size", 0)), labels)
