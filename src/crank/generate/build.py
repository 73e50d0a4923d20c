"""``crank build``: build a worker's image with the Docker SDK, labelled from its manifest.

Before the build it makes sure ``requirements.lock`` is current (locking again
unless ``--locked``) and that the Dockerfile is the one crank renders, then
stages the wheels the image installs (:mod:`crank.generate.staging`): the
locked set, the running crank (so the image runs the host's crank version) and
the worker itself. The image build needs no package index.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from crank.errors import BuildFailed, DockerConnectionLost, DockerUnavailable, GenerateError
from crank.generate.context import crank_version, image_tag
from crank.generate.drift import compare_files
from crank.generate.lock import LOCK_FILE, lock_state, write_lock
from crank.generate.render import get_renderer
from crank.generate.staging import StagedWheels, check_crank_wheel
from crank.generate.templates import template_version

if TYPE_CHECKING:
    from pathlib import Path

    from crank.generate.project import WorkerProject

Progress = Callable[[str], None]
DOCKER_API_VERSION = "1.41"


@dataclass(frozen=True)
class BuiltImage:
    tag: str
    image_id: str
    size_bytes: int
    labels: dict[str, str]


# Docker's image reference grammar (github.com/distribution/reference): an optional
# registry host, lower-case path components, an optional tag; no digest for a build.
_DOMAIN_PART = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*(?::[0-9]+)?"
_PATH_PART = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
IMAGE_TAG = re.compile(
    rf"(?P<name>(?:{_DOMAIN}/)?{_PATH_PART}(?:/{_PATH_PART})*)(?::(?P<tag>[\w][\w.-]{{0,127}}))?"
)
#: Docker's limit on the name part of a reference (registry and path).
MAX_IMAGE_NAME = 255


def check_image_tag(tag: str) -> None:
    """``tag`` is an image reference Docker takes (``name[:tag]``), else a GenerateError."""
    match = IMAGE_TAG.fullmatch(tag)
    if match is not None and len(match["name"]) <= MAX_IMAGE_NAME:
        return
    shown = tag if len(tag) <= 80 else f"{tag[:60]}... ({len(tag)} characters)"
    raise GenerateError(
        f"image tag {shown!r} is not a valid Docker image reference",
        hint="use NAME:TAG with a lower-case name (letters, digits, '.', '_', '-', '/') and a "
        "tag of letters, digits, '_', '.' and '-', e.g. --tag email-classifier:2.1.0",
        subject=tag,
    )


def image_labels(project: WorkerProject) -> dict[str, str]:
    """OCI labels plus crank's own: manifest digest, capabilities, crank version."""

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


def source_metadata(project: WorkerProject) -> dict[str, str]:
    """OCI source, revision and creation time of the project's git checkout (empty when
    the project is not in git); created is the commit's time, so a rebuild of the same
    commit gets the same label."""

    def git(*args: str) -> str:
        try:
            proc = subprocess.run(
                ["git", "-C", str(project.root), *args],
                capture_output=True,
                text=True,
                check=False,
                timeout=30,
            )
        except (OSError, subprocess.TimeoutExpired):
            return ""
        return proc.stdout.strip() if proc.returncode == 0 else ""

    source = git("remote", "get-url", "origin")
    if source.startswith("git@") and ":" in source:  # git@host:owner/repo.git
        host, _, path = source[len("git@") :].partition(":")
        source = f"https://{host}/{path}"
    source = re.sub(r"\.git$", "", re.sub(r"//[^/@]*@", "//", source))  # no credentials
    return {
        "IMAGE_SOURCE": source,
        "IMAGE_REVISION": git("rev-parse", "HEAD"),
        "IMAGE_CREATED": git("log", "-1", "--format=%cI"),
    }


def check_build_files(project: WorkerProject) -> None:
    """The project has the Dockerfile and .dockerignore this crank renders."""
    if not (project.root / "Dockerfile").is_file():
        raise GenerateError(
            f"{project.root}: no Dockerfile",
            hint="render it with `crank check --fix` (or `crank render dockerfile -o Dockerfile`)",
            subject=str(project.root),
        )
    files = [
        *get_renderer("dockerfile").render(project),
        *get_renderer("dockerignore").render(project),
    ]
    stale = sorted({f.file for f in compare_files(project.root, files)})
    if stale:
        raise GenerateError(
            f"{project.root}: {' and '.join(stale)} "
            f"{'differs' if len(stale) == 1 else 'differ'} from what this crank renders "
            "from the manifest",
            hint="run `crank check --fix`: crank build stages the wheels the current "
            "Dockerfile installs",
            subject=str(project.root),
        )


def ensure_buildable(project: WorkerProject, *, locked: bool, progress: Progress | None) -> None:
    """The Dockerfile and .dockerignore are crank's current ones, and the lock is current
    (written now unless ``locked``)."""
    check_build_files(project)
    status, problems = lock_state(project)
    if status == "current":
        return
    if locked:
        raise GenerateError(
            f"{project.root / LOCK_FILE} is {status}: "
            + (
                "the image installs exactly the locked set"
                if status == "missing"
                else "; ".join(problems)
            ),
            hint="run `crank lock` and commit requirements.lock (or build without --locked)",
            subject=str(project.root / LOCK_FILE),
        )
    if progress is not None:
        progress(f"locking the dependencies into {LOCK_FILE} ({status})")
    write_lock(project)


def build_image(
    project: WorkerProject,
    *,
    tag: str | None = None,
    base_image: str | None = None,
    crank_wheel: Path | None = None,
    locked: bool = False,
    progress: Progress | None = None,
) -> BuiltImage:
    """Build the project's Dockerfile; ``progress`` receives every line of build output."""
    # what the user typed is checked before Docker is asked anything: a typo in --tag or
    # --crank-wheel must not hide behind "no Docker engine answers"
    tag = tag or f"{project.manifest.name}:{image_tag(project.manifest.metadata.version)}"
    check_image_tag(tag)
    if crank_wheel is not None:
        check_crank_wheel(crank_wheel)
    check_build_files(project)
    client = docker_client()
    try:
        ensure_buildable(project, locked=locked, progress=progress)
        return _build(client, project, tag, base_image, crank_wheel, progress)
    finally:
        client.close()


def engine_machine(client: Any) -> str:
    """The Docker engine's CPU architecture as a wheel platform suffix (x86_64, aarch64)."""
    arch = str(client.info().get("Architecture") or "x86_64")
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(arch, arch)


def stream_build(
    client: Any,
    *,
    path: str,
    tag: str,
    labels: dict[str, str],
    buildargs: dict[str, str],
    base: str,
    progress: Progress | None = None,
) -> Any:
    """Build the context at ``path`` with the engine, following its output; the image.

    A failed step is BuildFailed with the engine's error; a connection to the engine
    that breaks on the way (the engine stopped or restarted mid-build) is
    DockerConnectionLost with the lines printed until then, never a traceback from
    the HTTP stack; a file of the context that cannot be read is BuildFailed naming it.
    """
    import urllib3
    from docker.errors import DockerException
    from requests.exceptions import RequestException

    tail: list[str] = []
    image_id = ""
    try:
        stream = client.api.build(
            path=path,
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
                    hint=_failure_hint(client, error, base),
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
        return client.images.get(image_id or tag)
    except (
        DockerException,
        RequestException,
        urllib3.exceptions.HTTPError,
        ConnectionError,
        TimeoutError,
    ) as exc:
        raise DockerConnectionLost(
            f"building {tag} failed: the connection to the Docker engine broke "
            f"({type(exc).__name__}: {exc})",
            hint="check that the engine still runs (docker info, and its log), "
            "then run crank build again",
            subject=tag,
            log=tuple(tail[-30:]),
        ) from None
    except OSError as exc:  # docker-py reads the whole context into a tar before it connects
        where = exc.filename or path
        raise BuildFailed(
            f"building {tag} failed: cannot read {where} in the build context "
            f"({exc.strerror or exc})",
            hint="make it readable, or keep it out of the image with a line in .dockerignore",
            subject=where,
            log=tuple(tail[-30:]),
        ) from None


def _build(
    client: Any,
    project: WorkerProject,
    tag: str,
    base_image: str | None,
    crank_wheel: Path | None,
    progress: Progress | None,
) -> BuiltImage:
    labels = image_labels(project)
    buildargs = source_metadata(project)
    if base_image:
        buildargs["BASE_IMAGE"] = base_image
    with StagedWheels(
        project, machine=engine_machine(client), crank_wheel=crank_wheel, progress=progress
    ):
        image = stream_build(
            client,
            path=str(project.root),
            tag=tag,
            labels=labels,
            buildargs=buildargs,
            base=base_image or dockerfile_base(project),
            progress=progress,
        )
    return BuiltImage(tag, image.id, int(image.attrs.get("Size", 0)), labels)
