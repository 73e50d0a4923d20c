"""``crank plugins``: what crank loaded, what failed and what was blocked."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from crank.plugins import PluginRecord

COLUMNS = ("NAME", "VERSION", "STATUS", "HOOKS", "MANIFEST")


def _row(record: PluginRecord) -> tuple[str, ...]:
    hooks = ",".join(h.removeprefix("crank_") for h in record.hooks) or "-"
    manifest = str(record.manifest_path) if record.manifest_path else "-"
    return (record.name, record.version or "-", record.status, hooks, manifest)


def format_table(records: list[PluginRecord]) -> str:
    rows = [COLUMNS, *(_row(r) for r in records)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS) - 1)]
    lines: list[str] = []
    for row, record in zip(rows, [None, *records], strict=True):
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
        if record is not None and record.error:
            lines.append(f"    error: {record.error}")
    return "\n".join(lines)


@click.command()
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Output format.",
)
def plugins(output_format: str) -> None:
    """List installed plugins: name, version, hooks, manifest and status.

    Status is loaded, failed (the error is shown) or blocked (named in
    CRANK_DISABLE_PLUGINS). A failed plugin never stops the others.
    """
    from crank.plugins import get_plugin_manager

    records = get_plugin_manager().records
    if output_format == "json":
        click.echo(json.dumps([r.as_dict() for r in records], indent=2))
        return
    click.echo(format_table(records))
    failed = sum(1 for r in records if r.status == "failed")
    blocked = sum(1 for r in records if r.status == "blocked")
    loaded = len(records) - failed - blocked
    click.echo(f"{loaded} loaded, {failed} failed, {blocked} blocked")
