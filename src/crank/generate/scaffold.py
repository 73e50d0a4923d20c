"""``crank new-worker``: render the worker template into a temp folder, then move it.

Nothing is ever written outside the target folder: the template is rendered in
a private staging folder, checked, and only then moved into place; ``--force``
overwrites the generated files of an existing folder and keeps every other file.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from crank.errors import GenerateError
from crank.generate.names import WorkerNames, capability_ids, worker_names

if TYPE_CHECKING:
    from crank.generate.render import RenderedFile

GpuChoice = Literal["none", "optional", "required"]


@dataclass(frozen=True)
class ScaffoldResult:
    target: Path
    names: WorkerNames
    capabilities: tuple[str, ...]
    files: tuple[str, ...]  # relative paths, sorted


def render_artifacts_into(root: Path) -> list[RenderedFile]:
    """Render every managed artifact of the project at ``root`` and write it there."""
    from crank.generate.project import load_project
    from crank.generate.render import render_all, write_files

    project = load_project(root)
    files = render_all(project)
    write_files(project.root, files)
    return files


def _check_target(target: Path, force: bool) -> None:
    if target.is_symlink():
        raise GenerateError(
            f"{target} is a symbolic link", hint="pass a real folder", subject=str(target)
        )
    if target.exists() and not target.is_dir():
        raise GenerateError(
            f"{target} exists and is not a folder",
            hint="choose another name or --output-dir",
            subject=str(target),
        )
    if target.is_dir() and any(target.iterdir()) and not force:
        raise GenerateError(
            f"{target} already exists and is not empty",
            hint="choose another name or --output-dir, or pass --force to overwrite it",
            subject=str(target),
        )


def new_worker(
    name: str,
    *,
    capabilities: tuple[str, ...] | list[str] = (),
    gpu: GpuChoice = "none",
    output_dir: Path | str = ".",
    description: str | None = None,
    force: bool = False,
) -> ScaffoldResult:
    """Scaffold a worker package at ``output_dir/<name>``; returns what was written."""
    names = worker_names(name)
    caps = capability_ids(capabilities, names.package)
    parent = Path(output_dir).resolve()
    if not parent.is_dir():
        raise GenerateError(
            f"output folder {output_dir} does not exist",
            hint="create it first or pass an existing --output-dir",
            subject=str(output_dir),
        )
    target = parent / names.worker
    _check_target(target, force)
    context = {
        "worker_name": names.worker,
        "package_dir": names.worker,
        "package_name": names.package,
        "class_name": names.class_name,
        "capabilities": ",".join(caps),
        "gpu": gpu,
    }
    if description:
        context["description"] = description
    try:
        files = _render_and_move(parent, target, context, names.worker)
    except OSError as exc:
        raise GenerateError(
            f"cannot write the worker into {parent}: {exc.strerror or exc}",
            hint="choose a writable --output-dir",
            subject=str(parent),
        ) from None
    return ScaffoldResult(target, names, caps, files)


def _render_and_move(
    parent: Path, target: Path, context: dict[str, str], worker: str
) -> tuple[str, ...]:
    from cookiecutter.main import cookiecutter

    from crank.generate.templates import worker_template

    # The staging folder sits inside the output folder so the final move is a rename
    # on the same file system; it is removed whatever happens.
    staging = Path(tempfile.mkdtemp(prefix=f".crank-new-{worker}-", dir=parent))
    try:
        produced = Path(
            cookiecutter(
                str(worker_template()),
                no_input=True,
                extra_context=context,
                output_dir=str(staging),
                accept_hooks=False,
            )
        ).resolve()
        if produced.parent != staging:
            raise GenerateError(
                f"the worker template wrote outside its folder: {produced}",
                hint="report this as a crank bug",
                subject=str(produced),
            )
        render_artifacts_into(produced)
        files = tuple(
            sorted(p.relative_to(produced).as_posix() for p in produced.rglob("*") if p.is_file())
        )
        if target.exists():
            # --force: generated files replace theirs, every other file is kept.
            shutil.copytree(produced, target, dirs_exist_ok=True)
        else:
            produced.replace(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return files
