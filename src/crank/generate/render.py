"""Artifact renderers: the protocol, the registry and the provenance stamp.

Every artifact crank manages (Dockerfile, CI workflow, compose, Kubernetes...)
is produced by an :class:`ArtifactRenderer` registered through the
``crank_register_renderers`` hook; ``crank render`` prints one, ``crank check``
re-renders them all and diffs.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from crank.errors import GenerateError

if TYPE_CHECKING:
    from pathlib import Path

    from crank.generate.project import WorkerProject

STAMP_MARK = "crank:generated"
#: Where the stamp goes while a file is rendered; the stamp's ``content=`` digest is
#: taken over the file with this in the stamp's place (see :func:`content_digest`).
STAMP_SLOT = "crank:generated-stamp"
_STAMP_TEXT = re.compile(re.escape(STAMP_MARK) + r"[^\n]*")


@dataclass(frozen=True)
class RenderedFile:
    """One rendered file; ``path`` is relative to the project root (posix)."""

    artifact: str
    path: str
    content: str


@runtime_checkable
class ArtifactRenderer(Protocol):
    """Turns a worker project (its manifest) into one or more files."""

    @property
    def name(self) -> str: ...

    @property
    def description(self) -> str: ...

    def render(self, project: WorkerProject) -> tuple[RenderedFile, ...]: ...


def content_digest(text: str) -> str:
    """16 hex digits of sha256 over ``text`` with its stamp (the rest of the stamp's
    line) replaced by :data:`STAMP_SLOT`: what the stamp's ``content=`` records."""
    body = _STAMP_TEXT.sub(STAMP_SLOT, text, count=1) if STAMP_MARK in text else text
    return hashlib.sha256(body.encode("utf-8")).hexdigest()[:16]


def stamp(artifact: str, project: WorkerProject, content: str = "") -> str:
    """The provenance every generated file carries (in a comment, to the end of its line).

    It names the artifact, the template version and the manifest, and (given the
    rendered ``content``) a digest of the file itself, so ``crank check`` tells a
    file edited by hand from one whose manifest changed. It holds no digest of the
    manifest: a manifest change alters only the files whose content changes.
    """
    from crank.generate.templates import template_version

    digest = f" content={content_digest(content)}" if content else ""
    return (
        f"{STAMP_MARK} artifact={artifact} template={template_version()} "
        f"manifest={project.manifest_relpath}{digest} "
        "(do not edit: change the manifest, then `crank check --fix`)"
    )


def stamped(text: str, artifact: str, project: WorkerProject) -> str:
    """``text`` rendered with :data:`STAMP_SLOT` where the stamp goes, stamp filled in."""
    return text.replace(STAMP_SLOT, stamp(artifact, project, text), 1)


ContextExtra = Callable[["WorkerProject"], Mapping[str, Any]]


@dataclass(frozen=True)
class TemplateRenderer:
    """A renderer made of Jinja templates from ``templates/artifacts``.

    ``files`` maps output paths (relative to the project root) to template names;
    ``context_extra`` adds the family's own values to the common context.
    """

    name: str
    description: str
    files: tuple[tuple[str, str], ...]
    context_extra: ContextExtra | None = field(default=None, compare=False)

    def render(self, project: WorkerProject) -> tuple[RenderedFile, ...]:
        from crank.generate.context import common_context
        from crank.generate.templates import artifact_environment

        context = dict(common_context(project))
        context["stamp"] = STAMP_SLOT
        if self.context_extra is not None:
            context.update(self.context_extra(project))
        env = artifact_environment()
        return tuple(
            RenderedFile(
                self.name,
                out,
                stamped(env.get_template(template).render(context), self.name, project),
            )
            for out, template in self.files
        )


def renderers() -> dict[str, ArtifactRenderer]:
    """Every registered renderer by name, crank's own first (first registration wins)."""
    from crank.plugins import get_plugin_manager

    found: dict[str, ArtifactRenderer] = {}

    def register(renderer: Any) -> None:
        if not isinstance(renderer, ArtifactRenderer):
            raise GenerateError(
                f"crank_register_renderers got {renderer!r}, not an ArtifactRenderer",
                hint="register an object with name, description and render(project)",
                subject=renderer,
            )
        found.setdefault(renderer.name, renderer)

    get_plugin_manager().hook.crank_register_renderers(register=register)
    return found


def get_renderer(name: str) -> ArtifactRenderer:
    available = renderers()
    if name not in available:
        raise GenerateError(
            f"no artifact renderer named {name!r}",
            hint=f"choose one of: {', '.join(sorted(available))}",
            subject=name,
        )
    return available[name]


def render_all(project: WorkerProject) -> list[RenderedFile]:
    """Every managed file of the project, in a stable order."""
    files: list[RenderedFile] = []
    for name in sorted(renderers()):
        files.extend(get_renderer(name).render(project))
    return files


def write_files(root: Path, files: list[RenderedFile] | tuple[RenderedFile, ...]) -> list[Path]:
    """Write rendered files under ``root``; if any path would escape it, nothing is written."""
    base = root.resolve()
    targets = []
    for file in files:
        target = (base / file.path).resolve()
        if not target.is_relative_to(base):
            raise GenerateError(
                f"renderer {file.artifact!r} wants to write {file.path!r} outside {base}",
                hint="renderer output paths must be relative and stay inside the project",
                subject=file.path,
            )
        targets.append((target, file.content))
    for target, content in targets:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content, encoding="utf-8")
        except OSError as exc:
            raise GenerateError(
                f"cannot write {target}: {exc.strerror or exc}",
                hint="check the folder exists and is writable",
                subject=str(target),
            ) from None
    return [target for target, _ in targets]
