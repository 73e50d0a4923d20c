"""``crank build``: a worker project's container image, built with Docker."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape

from crank.errors import BuildFailed, ExitCode
from crank.generate.build import build_image
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
@click.option("--quiet", "-q", is_flag=True, help="Print only the result.")
def build(
    path: Path, tag: str | None, base_image: str | None, crank_wheel: Path | None, quiet: bool
) -> ExitCode:
    """Build the container image of the worker project at PATH with Docker."""
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
    return ExitCode.OK
