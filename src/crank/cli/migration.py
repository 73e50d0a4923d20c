"""``crank migration new`` and ``crank migration status``: worker migration checklists."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import click

from crank.cli.options import format_option, manifest_option, parse_date, project_option
from crank.errors import ExitCode
from crank.generate.migration import (
    checklist_status,
    find_checklists,
    new_checklist,
    worker_project,
)


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
@manifest_option
@project_option
@click.option(
    "--date",
    "day",
    default=None,
    metavar="YYYY-MM-DD",
    callback=lambda _ctx, _param, value: parse_date(value, "--date"),
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
    day: dt.date | None,
    output_dir: Path,
    force: bool,
) -> ExitCode:
    """Write deployment/migration-WORKER-DATE.yml pre-filled from the manifest diff."""
    created = new_checklist(
        worker_project(worker, manifest, project),
        worker=worker,
        source=source,
        today=day or dt.date.today(),
        output_dir=output_dir,
        force=force,
    )
    changes = created.document["changes"]
    click.echo(f"created {created.path}")
    click.echo(
        f"  added {len(changes['added'])}, removed {len(changes['removed'])}, split "
        f"{len(changes['split'])}, breaking {len(changes['breaking'])}, infrastructure "
        f"{len(changes.get('infrastructure', []))}; "
        f"{len(created.document['artifacts'])} artifact(s) to update, "
        f"{len(created.document['retirement'])} retirement(s)"
    )
    return ExitCode.OK


@migration.command("status")
@click.argument("folder", default="deployment", type=click.Path(path_type=Path))
@format_option("text", "json")
def migration_status(folder: Path, output_format: str) -> ExitCode:
    """Summarise open items across the migration checklists in FOLDER."""
    statuses = [checklist_status(p) for p in find_checklists(folder)]
    open_total = sum(len(s.open_items) for s in statuses)
    if output_format == "json":
        click.echo(
            json.dumps(
                {"open": open_total, "checklists": [s.as_dict() for s in statuses]}, indent=2
            )
        )
        return ExitCode.OK
    for status in statuses:
        click.echo(
            f"{status.path}: {status.worker} ({status.date}) {status.done}/{status.total} done"
        )
        for item in status.open_items:
            click.echo(f"  [ ] {item.section}: {item.item}")
    click.echo(f"{len(statuses)} checklist(s), {open_total} open item(s)")
    return ExitCode.OK
