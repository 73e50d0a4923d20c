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
from typing import TYPE_CHECKING, Any, Protocol, cast, runtime_checkable

from crank.contributions import Contribution, ContributionKind
from crank.errors import CrankError, GenerateError, PluginError
from crank.generate.context import common_context
from crank.generate.templates import artifact_environment, template_version
from crank.plugins import get_plugin_manager

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
    digest = f" content={content_digest(content)}" if content else ""
    return (
        f"{STAMP_MARK} artifact={artifact} template={template_version()} "
        f"manifest={project.manifest_relpath}{digest}"
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


def _accept_renderer(renderer: object) -> tuple[str, ArtifactRenderer]:
    if not isinstance(renderer, ArtifactRenderer):
        raise PluginError(
            f"crank_register_renderers got {renderer!r}, not an ArtifactRenderer",
            hint="register an object with name, description and render(project)",
            subject=renderer,
        )
    return renderer.name, renderer


#: Artifact renderers, gathered through ``crank_register_renderers``.
RENDERERS: ContributionKind[ArtifactRenderer] = ContributionKind(
    "crank_register_renderers", "renderer", _accept_renderer
)


@dataclass(frozen=True)
class RenderFailure:
    """A renderer that raised: its files are missing from this rendering."""

    artifact: str
    plugin: str
    error: str

    @property
    def message(self) -> str:
        return f"renderer {self.artifact!r} of plugin {self.plugin!r} failed: {self.error}"

    hint = "a bug in the plugin: report it to its authors, or disable it with CRANK_DISABLE_PLUGINS"


@dataclass(frozen=True)
class Rendering:
    """What every renderer made of one project, and the renderers that failed."""

    files: tuple[RenderedFile, ...]
    failures: tuple[RenderFailure, ...] = ()


def registered_renderers() -> dict[str, Contribution[ArtifactRenderer]]:
    """Every registered renderer by name, with the plugin that registered it."""
    return get_plugin_manager().collect(RENDERERS)


def renderers() -> dict[str, ArtifactRenderer]:
    """Every registered renderer by name (crank's own first: they are tryfirst)."""
    return {name: c.value for name, c in registered_renderers().items()}


def _registered(name: str) -> Contribution[ArtifactRenderer]:
    available = registered_renderers()
    if name not in available:
        raise GenerateError(
            f"no artifact renderer named {name!r}",
            hint=f"choose one of: {', '.join(sorted(available))}",
            subject=name,
        )
    return available[name]


def get_renderer(name: str) -> ArtifactRenderer:
    return _registered(name).value


def _render(renderer: Contribution[ArtifactRenderer], project: WorkerProject) -> Rendering:
    try:
        # Any: a plugin's renderer may return anything, which is checked below
        returned: Any = renderer.value.render(project)
        # text, a mapping or a lone file is one wrong value, not a sequence of them
        single = isinstance(returned, str | bytes | RenderedFile | Mapping)
        files: tuple[object, ...] = (returned,) if single else tuple(returned)
    except CrankError:
        raise  # a deliberate error about the project, which names what is wrong
    except Exception as exc:  # a broken renderer must not hide the other artifacts
        failure = RenderFailure(renderer.name, renderer.plugin, f"{type(exc).__name__}: {exc}")
        return Rendering((), (failure,))
    wrong = next((f for f in files if not isinstance(f, RenderedFile)), None)
    if wrong is not None:  # the same bug: it would crash whatever writes or compares them
        error = f"render() returned {returned!r}, not a tuple of RenderedFile"
        return Rendering((), (RenderFailure(renderer.name, renderer.plugin, error),))
    return Rendering(cast("tuple[RenderedFile, ...]", files))


def render_one(name: str, project: WorkerProject) -> tuple[RenderedFile, ...]:
    """The files of the renderer ``name``; a renderer that raises is a GenerateError
    naming it and its plugin."""
    rendering = _render(_registered(name), project)
    for failure in rendering.failures:
        raise GenerateError(failure.message, hint=failure.hint, subject=name)
    return rendering.files


def render_each(project: WorkerProject) -> Rendering:
    """Every managed file of the project, in a stable order; each renderer runs on
    its own, and one that raises is reported in ``failures``."""
    files: list[RenderedFile] = []
    failures: list[RenderFailure] = []
    available = registered_renderers()
    for name in sorted(available):
        rendering = _render(available[name], project)
        files.extend(rendering.files)
        failures.extend(rendering.failures)
    return Rendering(tuple(files), tuple(failures))


def render_all(project: WorkerProject) -> list[RenderedFile]:
    """Every managed file of the project, in a stable order; a renderer that
    raises is a GenerateError naming it (:func:`render_each` goes on instead)."""
    rendering = render_each(project)
    for failure in rendering.failures:
        raise GenerateError(failure.message, hint=failure.hint, subject=failure.artifact)
    return list(rendering.files)


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
            blocking = _file_in_the_way(target)
            if blocking is not None:
                # mkdir's own words, "File exists", do not say which file is in the way
                raise GenerateError(
                    f"cannot write {target}: {blocking} is a file, not a folder",
                    hint=f"write somewhere else, or move {blocking} away",
                    subject=str(target),
                ) from None
            raise GenerateError(
                f"cannot write {target}: {exc.strerror or exc}",
                hint="check the folder exists and is writable",
                subject=str(target),
            ) from None
    return [target for target, _ in targets]


def _file_in_the_way(target: Path) -> Path | None:
    """The closest existing folder of ``target`` when it is not a folder (``x.yaml`` of
    ``x.yaml/Dockerfile``), else None."""
    for folder in target.parents:
        if folder.exists():
            return None if folder.is_dir() else folder
    return None
