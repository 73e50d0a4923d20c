"""``crank routes`` and ``crank compat``: the routing table and breaking changes."""

from __future__ import annotations

import errno
import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from crank.cli.options import (
    MAX_GRACE_DAYS,
    format_option,
    today_option,
    worker_paths_option,
)
from crank.errors import ExitCode, GenerateError, ManifestError, UsageError
from crank.generate.project import find_manifest
from crank.manifest import load_manifest
from crank.plugins import get_plugin_manager
from crank.routing import Router, load_router
from crank.routing.compat import compare_manifests
from crank.routing.compat_report import render
from crank.routing.sources import manifest_from_file, manifest_from_text, read_at_ref

if TYPE_CHECKING:
    import datetime as dt

    from crank.annotations import ReportFormat
    from crank.manifest import Manifest


def worker_manifest_file(path: Path) -> tuple[Path, Path] | None:
    """The crank.yaml ``path`` names (itself, the one in the folder, or the one of the
    worker project the folder is: ``src/<package>/crank.yaml`` as ``crank new-worker``
    makes it), and the folder its worker's package is imported from; None: none."""
    if path.is_file():
        return path, path.resolve().parent
    if (path / "crank.yaml").is_file():
        return path / "crank.yaml", path.resolve()
    if path.is_dir() and (path / "pyproject.toml").is_file():
        try:
            found = find_manifest(path)
        except GenerateError:
            return None
        # the manifest sits in its package (src/<package>/ or <package>/)
        return found, found.resolve().parent.parent
    return None


def why_no_manifest(path: Path) -> str:
    """Why ``path`` holds no manifest to read: a folder without one, a symbolic link
    that leads nowhere, or no file at all."""
    try:
        path.stat()
    except OSError as exc:
        # is_file() and is_dir() answer False for a loop as for a missing file
        if exc.errno == errno.ELOOP:
            return "a symbolic link loop (ELOOP): its links never lead to a file"
        if path.is_symlink():
            return f"a symbolic link to {path.readlink()}, which does not exist"
        return "no such manifest file"
    if path.is_dir():
        return "no crank.yaml in the folder"
    return "not a regular file (a pipe or a device?)"


def load_manifest_file(path: str) -> Manifest:
    """The manifest at ``path`` (a crank.yaml, a folder holding one, or a worker
    project's folder, as ``crank run --worker`` takes it), a usage error when there is
    none."""
    found = worker_manifest_file(Path(path))
    if found is None:
        raise UsageError(
            f"{path}: {why_no_manifest(Path(path))}",
            hint="give the path of a crank.yaml, of the folder holding it, or of the worker "
            "project (its pyproject.toml's folder)",
            subject=path,
        )
    return load_manifest(found[0])


def once_each(manifests: list[Manifest]) -> list[Manifest]:
    """``manifests`` without repeats of one file: a worker named twice (by its folder and
    by its crank.yaml, or the same ``--worker`` again) is one worker, not two declaring
    the same capabilities."""
    seen: set[Path] = set()
    unique: list[Manifest] = []
    for manifest in manifests:
        where = manifest.path.resolve() if manifest.path is not None else None
        if where is None or where not in seen:
            unique.append(manifest)
        if where is not None:
            seen.add(where)
    return unique


def build_router(worker_paths: tuple[str, ...], today: dt.date | None) -> Router:
    """A router over ``--worker`` manifests, or over every installed worker."""
    clock = (lambda: today) if today is not None else None
    if worker_paths:
        manifests = once_each([load_manifest_file(p) for p in worker_paths])
        return Router.from_manifests(manifests, today=clock)
    return load_router(get_plugin_manager().manifest_paths(), today=clock)


# -- crank routes -----------------------------------------------------------------


def format_routes_text(router: Router) -> str:
    rows = router.table()
    if not rows:
        return "no capabilities: no worker is installed (crank plugins lists what is)\n"
    header = ("CAPABILITY", "VERSION", "WORKER", "STATUS", "ROUTES TO", "SUNSET", "LEGACY ROUTES")
    table = [header]
    for r in rows:
        target = ", ".join(r["routes_to"]) if r["status"] != "active" else "-"
        if r["select_by"]:
            target = f"{target} (by {r['select_by']})"
        table.append(
            (
                r["capability"],
                r["version"] or "-",
                r["worker"],
                r["status"],
                target,
                r["sunset"] or "-",
                ", ".join(r["legacy_routes"]) or "-",
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True)) + "  " + row[-1]
        for row in table
    ]
    live = sum(1 for r in rows if r["status"] == "active")
    old = len(rows) - live
    lines.append(f"{live} live, {old} deprecated")
    return "\n".join(lines) + "\n"


@click.command()
@format_option("text", "json")
@worker_paths_option("Route")
@today_option
def routes(output_format: str, worker_paths: tuple[str, ...], today: dt.date | None) -> ExitCode:
    """Print the capability routing table, deprecated ids and legacy paths included."""
    router = build_router(worker_paths, today)
    if output_format == "json":
        payload = {"routes": router.table(), "legacy_routes": router.legacy_routes()}
        click.echo(json.dumps(payload, indent=2))
    else:
        click.echo(format_routes_text(router), nl=False)
    return ExitCode.OK


# -- crank compat -----------------------------------------------------------------

_COMPAT_HINT = "crank compat OLD NEW takes two crank.yaml files (or folders holding one)"


def _compat_manifest(path: str) -> Path:
    """The manifest ``path`` names: a crank.yaml, or a folder holding one."""
    file = Path(path)
    if file.is_dir() and (file / "crank.yaml").is_file():
        return file / "crank.yaml"
    if file.is_dir():
        raise UsageError(
            f"{path}: a folder without a crank.yaml",
            hint=f"give the path of the manifest in it; {_COMPAT_HINT}",
            subject=path,
        )
    if not file.is_file():
        raise UsageError(
            f"{path}: no such manifest file",
            hint=f"check the path; {_COMPAT_HINT}",
            subject=path,
        )
    return file


def _project_manifest() -> Path:
    """The manifest of --against without a PATH: ./crank.yaml, else the project's, found
    as ``crank check`` finds it (src/PACKAGE/crank.yaml in a ``crank new-worker``
    project)."""
    here = Path("crank.yaml")
    if here.is_file():
        return here
    root = Path.cwd()
    try:
        return find_manifest(root).relative_to(root)
    except GenerateError as exc:
        raise UsageError(
            exc.message,
            hint="give the manifest: crank compat --against GIT_REF path/to/crank.yaml",
            subject=exc.subject,
        ) from None


@click.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=str))
@click.option(
    "--against",
    "git_ref",
    metavar="GIT_REF",
    help="Compare PATH (default ./crank.yaml, else the project's manifest, as crank "
    "check finds it) with its version at this git ref.",
)
@format_option("text", "json", "github")
@click.option(
    "--min-grace-days",
    type=click.IntRange(min=0, max=MAX_GRACE_DAYS),
    default=90,
    show_default=True,
    help="Shortest allowed time between deprecation (or today) and sunset.",
)
@today_option
def compat(
    paths: tuple[str, ...],
    git_ref: str | None,
    output_format: ReportFormat,
    min_grace_days: int,
    today: dt.date | None,
) -> ExitCode:
    """Find manifest changes that strand clients: crank compat OLD NEW.

    With --against GIT_REF, OLD is PATH as of that ref. Each breaking change has
    a rule id (CMP001..CMP008, see docs/capabilities.md). Exit status: 0
    compatible, 1 breaking changes, 2 usage error.
    """
    try:
        if git_ref is not None:
            if len(paths) > 1:
                raise UsageError(
                    "--against takes at most one manifest path",
                    hint="crank compat --against origin/main path/to/crank.yaml",
                )
            new_path = _compat_manifest(paths[0]) if paths else _project_manifest()
            old_label = f"{git_ref}:{new_path}"
            text = read_at_ref(git_ref, new_path)
            if text is None:
                click.echo(
                    f"{new_path} does not exist at {git_ref}: a new worker, nothing to compare"
                )
                return ExitCode.OK
            old, old_doc = manifest_from_text(text, old_label)
        else:
            if len(paths) != 2:
                raise UsageError(
                    f"compat needs two manifests (OLD NEW), got {len(paths)}",
                    hint="crank compat old/crank.yaml new/crank.yaml, "
                    "or crank compat --against GIT_REF [PATH]",
                )
            old_path, new_path = (_compat_manifest(p) for p in paths)
            old_label = str(old_path)
            old, old_doc = manifest_from_file(old_path)
        new, new_doc = manifest_from_file(new_path)
    except ManifestError as exc:
        raise UsageError(exc.message, hint=exc.hint, subject=exc.subject) from None
    report = compare_manifests(
        old,
        new,
        today=today,
        min_grace_days=min_grace_days,
        old_document=old_doc,
        new_document=new_doc,
        old_label=old_label,
        new_label=str(new_path),
    )
    click.echo(render(report, output_format), nl=False)
    return ExitCode.OK if report.ok else ExitCode.FINDINGS
