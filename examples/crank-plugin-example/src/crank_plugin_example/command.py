"""``crank services``: do the HTTP services the workers declare answer?"""

from __future__ import annotations

from pathlib import Path

import click

from crank import load_manifest
from crank.plugin import ExitCode, installed_workers
from crank.testing import check_dependency
from crank_plugin_example.services import declared_services


@click.command("services")
@click.argument("manifests", nargs=-1, type=click.Path(dir_okay=False, path_type=Path))
def services(manifests: tuple[Path, ...]) -> ExitCode:
    """Check every HTTP service that MANIFESTS (crank.yaml files; default: the
    installed workers) declare under dependencies.system.

    Exit status: 0 when every required service answers, 1 when one does not.
    """
    workers = (
        [(path, load_manifest(path)) for path in manifests] if manifests else installed_workers()
    )
    rows: list[tuple[str, str, str, str]] = []
    down = required_down = 0
    for _, manifest in workers:
        for dep in declared_services(manifest):
            result = check_dependency(dep.check)
            state = "up" if result.available else "broken" if result.broken else "down"
            if not result.available:
                down += 1
                required_down += not dep.optional
            need = " (optional)" if dep.optional else ""
            rows.append((manifest.name, dep.name + need, state, result.reason))
    if not rows:
        click.echo("no worker declares an HTTP service")
        return ExitCode.OK
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True)]
        click.echo("  ".join([*cells, row[3]]))
    plural = "s" if len(rows) != 1 else ""
    click.echo(
        f"{len(rows)} service{plural}: {len(rows) - down} up, {down} not ({required_down} required)"
    )
    return ExitCode.FINDINGS if required_down else ExitCode.OK
