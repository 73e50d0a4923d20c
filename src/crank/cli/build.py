"""``crank build`` (a worker project's container image, built with Docker) and
``crank lock`` (the locked, hashed dependency set the image installs)."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape

from crank.errors import BuildFailed, ExitCode, UsageError
from crank.generate.build import build_image
from crank.generate.lock import (
    LOCK_FILE,
    lock_changes,
    lock_state,
    parse_lock,
    read_lock,
    write_lock,
)
from crank.generate.project import load_project


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
@click.option(
    "--locked",
    is_flag=True,
    help="Fail when requirements.lock is missing or stale instead of locking again (CI).",
)
@click.option("--quiet", "-q", is_flag=True, help="Print only the result.")
def build(
    path: Path,
    tag: str | None,
    base_image: str | None,
    crank_wheel: Path | None,
    locked: bool,
    quiet: bool,
) -> ExitCode:
    """Build the container image of the worker project at PATH with Docker."""
    console = Console(stderr=True, highlight=False)
    project = load_project(path)
    try:
        if quiet:
            built = build_image(
                project, tag=tag, base_image=base_image, crank_wheel=crank_wheel, locked=locked
            )
        else:
            with console.status(f"building {project.manifest.name}") as status:

                def show(line: str) -> None:
                    if line.startswith("Step "):
                        status.update(escape(line))
                        console.print(f"[bold]{escape(line)}[/bold]")
                    else:
                        console.print(f"[dim]{escape(line)}[/dim]")

                built = build_image(
                    project,
                    tag=tag,
                    base_image=base_image,
                    crank_wheel=crank_wheel,
                    locked=locked,
                    progress=show,
                )
    except BuildFailed as exc:
        if quiet:
            for line in exc.log:
                click.echo(line, err=True)
        raise
    click.echo(f"built {built.tag} ({built.image_id[:19]}, {built.size_bytes / 1e6:.0f} MB)")
    return ExitCode.OK


@click.command("lock")
@click.argument("path", default=".", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--check",
    "check_only",
    is_flag=True,
    help="Only say whether requirements.lock is current (exit 1 when it is not).",
)
@click.option(
    "--upgrade",
    is_flag=True,
    help="Resolve every package afresh to the newest version allowed (by default the "
    "versions already locked are kept where the requirements still allow them).",
)
def lock(path: Path, check_only: bool, upgrade: bool) -> ExitCode:
    """Resolve the dependencies of the worker project at PATH into requirements.lock
    (versions and sha256 hashes, with uv): the set its image installs. Versions the
    lock already pins are kept where the requirements still allow them."""

    if check_only and upgrade:
        raise UsageError(
            "--check and --upgrade cannot be used together: --check only reads the lock",
            hint="run `crank lock --upgrade`, then `crank lock --check`",
        )
    project = load_project(path)
    if check_only:
        status, problems = lock_state(project)
        click.echo(f"{project.root / LOCK_FILE}: {status}")
        for problem in problems:
            click.echo(f"  {problem}")
        if status == "current":
            return ExitCode.OK
        click.echo("  hint: run `crank lock` and commit requirements.lock")
        return ExitCode.FINDINGS
    before = read_lock(project.root / LOCK_FILE)  # None: there is none (or it does not parse)
    written = write_lock(project, upgrade=upgrade)
    after = parse_lock(written.read_text(encoding="utf-8"))
    changes = None if before is None else lock_changes(before, after)
    if changes == []:
        click.echo(f"locked {len(after)} packages in {written}: no version changed")
        return ExitCode.OK
    click.echo(f"locked {len(after)} packages in {written} (commit it)")
    for line in changes or ():
        click.echo(f"  {line}")
    return ExitCode.OK
