"""``crank new-worker``, ``render``, ``check``, ``migration`` and ``build``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, cast

import click

if TYPE_CHECKING:
    from crank.generate.scaffold import GpuChoice

GPU_CHOICES = ("none", "optional", "required")


@click.command("new-worker")
@click.argument("name")
@click.option(
    "--capability",
    "capabilities",
    multiple=True,
    metavar="ID",
    help="Capability id to scaffold (repeatable); default <package>.echo.",
)
@click.option(
    "--gpu",
    type=click.Choice(GPU_CHOICES),
    default="none",
    show_default=True,
    help="Whether the worker needs a GPU (a CUDA base image when required).",
)
@click.option(
    "--output-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(),
    show_default=True,
    help="Folder the worker's folder is created in.",
)
@click.option("--description", default=None, help="One-line description of the worker.")
@click.option("--no-input", is_flag=True, help="Never prompt (the default values are used).")
@click.option(
    "--force",
    is_flag=True,
    help="Fill an existing folder: add missing files, keep every file that differs.",
)
@click.option(
    "--overwrite",
    multiple=True,
    metavar="FILE",
    help="With --force, replace this file although it differs (repeatable; a backup "
    "is kept as FILE.orig).",
)
def new_worker(
    name: str,
    capabilities: tuple[str, ...],
    gpu: str,
    output_dir: Path,
    description: str | None,
    no_input: bool,
    force: bool,
    overwrite: tuple[str, ...],
) -> None:
    """Scaffold a worker package NAME: code, manifest, tests and deployment files."""
    from crank.generate.scaffold import new_worker as scaffold

    if not capabilities and not no_input and sys.stdin.isatty():
        answer = click.prompt(
            "Capability ids (comma-separated, empty for the default)",
            default="",
            show_default=False,
        )
        capabilities = tuple(c for c in answer.split(",") if c.strip())
    result = scaffold(
        name,
        capabilities=capabilities,
        gpu=cast("GpuChoice", gpu),
        output_dir=output_dir,
        description=description,
        force=force,
        overwrite=overwrite,
    )
    if len(result.added) == len(result.files):
        click.echo(f"created {result.target} ({len(result.files)} files)")
    else:
        click.echo(
            f"updated {result.target}: {len(result.added)} added, "
            f"{len(result.unchanged)} unchanged, {len(result.overwritten)} overwritten"
        )
        for rel in result.overwritten:
            click.echo(f"  overwrote {rel} (backup {rel}.orig)")
    for failure in result.render_failures:
        click.echo(f"warning: {failure.message}; its files were not written", err=True)
    click.echo(
        f"  worker {result.names.worker}, package {result.names.package}, "
        f"capabilities {', '.join(result.capabilities)}"
    )
    click.echo("next:")
    for line in next_steps(result.target):
        click.echo(f"  {line}")


def next_steps(target: Path) -> list[str]:
    """What to type after new-worker, in the environment crank is installed in.

    The worker's ``test`` extra brings pytest into that environment (a pytest from
    elsewhere cannot import crank); ``crank run`` comes last and on its own, as it
    serves until stopped, on a port the user can change.
    """
    import shlex

    try:
        shown = target.relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        shown = str(target)
    return [
        f"cd {shlex.quote(shown)}",
        "python -m pip install -e '.[test]'",
        "crank lint && python -m pytest",
        "crank run --port 8080    # serves until Ctrl-C; choose any free port",
    ]


@click.command("render")
@click.argument("artifact")
@click.option(
    "--manifest",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="crank.yaml to render from (default: the project in the current folder).",
)
@click.option(
    "--project",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Project folder (default: the current folder, or above --manifest).",
)
@click.option(
    "--output",
    "-o",
    default="-",
    show_default=True,
    help="File to write, or - for stdout (several files need a folder).",
)
def render(artifact: str, manifest: Path | None, project: Path | None, output: str) -> None:
    """Render one deployment ARTIFACT (dockerfile, dockerignore, ci, compose, k8s,
    precommit, env, or a plugin's) from a manifest."""
    from crank.generate.project import load_project
    from crank.generate.render import render_one, write_files

    files = render_one(artifact, load_project(project, manifest))
    if output == "-":
        for file in files:
            if len(files) > 1:
                click.echo(f"--- {file.path}")
            click.echo(file.content, nl=False)
        return
    target = Path(output)
    if len(files) == 1:
        from crank.generate.render import RenderedFile

        write_files(target.parent, [RenderedFile(artifact, target.name, files[0].content)])
        click.echo(f"wrote {target}", err=True)
        return
    for path in write_files(target, files):
        click.echo(f"wrote {path}", err=True)


def _display(base: str, relpath: str) -> str:
    return relpath if base in (".", "") else f"{base.rstrip('/')}/{relpath}"


@click.command("check")
@click.argument("paths", nargs=-1, type=click.Path(file_okay=False))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json", "github"]),
    default="text",
    show_default=True,
    help="Output format (github: workflow annotations).",
)
@click.option("--fix", is_flag=True, help="Re-render missing and drifted artifacts.")
def check(paths: tuple[str, ...], fmt: str, fix: bool) -> None:
    """Check that the deployment artifacts of the worker projects at PATHS (default:
    the current folder) match their manifests; exit 1 on drift."""
    import json

    from crank.annotations import github_annotation
    from crank.errors import ExitCode
    from crank.generate.check import check_project
    from crank.generate.project import load_project

    bases = paths or (".",)
    results = [(base, check_project(load_project(base), fix=fix)) for base in bases]
    problems = sum(len(r.findings) for _, r in results)
    if fmt == "json":
        click.echo(
            json.dumps(
                {"ok": problems == 0, "projects": [r.as_dict() for _, r in results]}, indent=2
            )
        )
    else:
        for base, result in results:
            for path in result.fixed:
                click.echo(f"fixed {_display(base, path)}", err=fmt == "github")
            for finding in result.findings:
                where = _display(base, finding.file)
                if fmt == "github":
                    body = finding.message + (
                        "\n" + "".join(finding.hunks) if finding.hunks else ""
                    )
                    click.echo(
                        github_annotation(
                            "error",
                            body,
                            file=where,
                            line=finding.line,
                            title=f"crank check ({finding.kind})",
                        )
                    )
                    continue
                click.echo(f"{where}:{finding.line}: {finding.kind}: {finding.message}")
                for hunk in finding.hunks:
                    click.echo("    " + hunk.rstrip("\n").replace("\n", "\n    "))
        if problems:
            click.echo(
                f"crank check: {problems} problem(s) in {len(results)} project(s); "
                "run `crank check --fix` to re-render the artifacts",
                err=True,
            )
        else:
            click.echo(f"crank check: {len(results)} project(s) match their manifests", err=True)
    if problems:
        sys.exit(ExitCode.FINDINGS)


@click.command("build")
@click.argument("path", default=".", type=click.Path(file_okay=False, path_type=Path))
@click.option("--tag", "-t", default=None, help="Image tag (default: <worker>:<version>).")
@click.option(
    "--base-image",
    envvar="CRANK_BASE_IMAGE",
    default=None,
    help="Base image of both stages (the Dockerfile's BASE_IMAGE), e.g. from a mirror "
    "[env: CRANK_BASE_IMAGE; default: the one the Dockerfile names].",
)
@click.option(
    "--crank-wheel",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="crank wheel to install in the image (default: packed from this crank).",
)
@click.option("--quiet", "-q", is_flag=True, help="Print only the result.")
def build(
    path: Path, tag: str | None, base_image: str | None, crank_wheel: Path | None, quiet: bool
) -> None:
    """Build the container image of the worker project at PATH with Docker."""
    from rich.console import Console
    from rich.markup import escape

    from crank.errors import BuildFailed
    from crank.generate.build import build_image
    from crank.generate.project import load_project

    console = Console(stderr=True, highlight=False)
    project = load_project(path)
    try:
        if quiet:
            built = build_image(project, tag=tag, base_image=base_image, crank_wheel=crank_wheel)
        else:
            with console.status(f"building {project.manifest.name}") as status:

                def show(line: str) -> None:
                    if line.startswith("Step "):
                        status.update(escape(line))
                        console.print(f"[bold]{escape(line)}[/bold]")
                    else:
                        console.print(f"[dim]{escape(line)}[/dim]")

                built = build_image(
                    project, tag=tag, base_image=base_image, crank_wheel=crank_wheel, progress=show
                )
    except BuildFailed as exc:
        if quiet:
            for line in exc.log:
                click.echo(line, err=True)
        raise
    click.echo(f"built {built.tag} ({built.image_id[:19]}, {built.size_bytes / 1e6:.0f} MB)")


@click.group("migration")
def migration() -> None:
    """Create and track worker migration checklists."""


@migration.command("new")
@click.argument("worker")
@click.option(
    "--from",
    "source",
    default=None,
    metavar="OLD_MANIFEST|GIT_REF",
    help="The manifest before the migration: a file or a git ref.",
)
@click.option(
    "--manifest",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The worker's crank.yaml (default: the project in the current folder).",
)
@click.option(
    "--project",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="The worker project folder (default: the current folder).",
)
@click.option(
    "--date",
    "day",
    default=None,
    metavar="YYYY-MM-DD",
    help="Date of the checklist (default: today).",
)
@click.option(
    "--output-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("deployment"),
    show_default=True,
    help="Where checklists live.",
)
@click.option("--force", is_flag=True, help="Replace an existing checklist of the same day.")
def migration_new(
    worker: str,
    source: str | None,
    manifest: Path | None,
    project: Path | None,
    day: str | None,
    output_dir: Path,
    force: bool,
) -> None:
    """Write deployment/migration-WORKER-DATE.yml pre-filled from the manifest diff."""
    import datetime as dt

    from crank.errors import UsageError
    from crank.generate.migration import new_checklist, worker_project

    try:
        today = dt.date.fromisoformat(day) if day else dt.date.today()
    except ValueError:
        raise UsageError(
            f"--date {day!r} is not a YYYY-MM-DD date", hint="e.g. --date 2026-11-22"
        ) from None
    created = new_checklist(
        worker_project(worker, manifest, project),
        worker=worker,
        source=source,
        today=today,
        output_dir=output_dir,
        force=force,
    )
    changes = created.document["changes"]
    click.echo(f"created {created.path}")
    click.echo(
        f"  added {len(changes['added'])}, removed {len(changes['removed'])}, split "
        f"{len(changes['split'])}, breaking {len(changes['breaking'])}; "
        f"{len(created.document['artifacts'])} artifact(s) to update, "
        f"{len(created.document['retirement'])} retirement(s)"
    )


@migration.command("status")
@click.argument("folder", default="deployment", type=click.Path(path_type=Path))
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
def migration_status(folder: Path, fmt: str) -> None:
    """Summarise open items across the migration checklists in FOLDER."""
    import json

    from crank.generate.migration import checklist_status, find_checklists

    statuses = [checklist_status(p) for p in find_checklists(folder)]
    open_total = sum(len(s.open_items) for s in statuses)
    if fmt == "json":
        click.echo(
            json.dumps(
                {"open": open_total, "checklists": [s.as_dict() for s in statuses]}, indent=2
            )
        )
        return
    for status in statuses:
        click.echo(
            f"{status.path}: {status.worker} ({status.date}) {status.done}/{status.total} done"
        )
        for item in status.open_items:
            click.echo(f"  [ ] {item.section}: {item.item}")
    click.echo(f"{len(statuses)} checklist(s), {open_total} open item(s)")
