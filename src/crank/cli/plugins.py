"""``crank plugins``: what crank loaded, what failed and what was blocked."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

from crank.cli.group import COMMANDS
from crank.cli.options import format_option
from crank.errors import ExitCode
from crank.generate.render import RENDERERS
from crank.manifest.lint import LINT_RULES
from crank.plugins import WORKERS, get_plugin_manager
from crank.testing.dependencies import DEPENDENCY_CHECKERS

if TYPE_CHECKING:
    from collections.abc import Sequence

    from crank.contributions import ContributionProblem
    from crank.plugins import CrankPluginManager, PluginRecord

COLUMNS = ("NAME", "VERSION", "STATUS", "HOOKS", "MANIFEST")


def _row(record: PluginRecord) -> tuple[str, ...]:
    hooks = ",".join(h.removeprefix("crank_") for h in record.hooks) or "-"
    manifest = str(record.manifest_path) if record.manifest_path else "-"
    return (record.name, record.version or "-", record.status, hooks, manifest)


def idle_note(record: PluginRecord) -> str:
    """Why a loaded plugin does nothing (see :meth:`CrankPluginManager.idle`)."""
    return (
        f"plugin {record.name!r} ({record.module}) adds nothing: it implements no hook and "
        "has no crank.yaml beside its module (a worker package must ship its crank.yaml "
        "inside the package, as package data)"
    )


def format_table(
    records: list[PluginRecord],
    problems: Sequence[ContributionProblem] = (),
    idle: Sequence[PluginRecord] = (),
) -> str:
    """One row per plugin; its load error, its contributions' problems and, for one that
    adds nothing, why, below it."""
    rows = [COLUMNS, *(_row(r) for r in records)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS) - 1)]
    lines: list[str] = []
    for row, record in zip(rows, [None, *records], strict=True):
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
        if record is not None and record.error:
            lines.append(f"    error: {record.error}")
        if record is not None:
            lines.extend(f"    problem: {p.message}" for p in problems if p.plugin == record.name)
        if record is not None and record in idle:
            lines.append(f"    note: {idle_note(record)}")
    return "\n".join(lines)


def gather_problems(manager: CrankPluginManager) -> tuple[ContributionProblem, ...]:
    """Gather every kind of contribution once, so each plugin's problems are known."""
    kinds: tuple[Any, ...] = (COMMANDS, LINT_RULES, RENDERERS, DEPENDENCY_CHECKERS, WORKERS)
    for kind in kinds:
        manager.collect(kind)
    return manager.problems()


@click.command()
@format_option("text", "json")
def plugins(output_format: str) -> ExitCode:
    """List installed plugins: name, version, hooks, manifest and status.

    Status is loaded, failed (the error is shown) or blocked (named in
    CRANK_DISABLE_PLUGINS). A contribution crank could not use (a hook that
    raised, an unusable object, a name registered twice) is listed under its
    plugin. A failed plugin or contribution never stops the others, but
    makes this command exit 1 (a blocked one does not: it was asked for).
    """
    manager = get_plugin_manager()
    records = manager.records
    problems = gather_problems(manager)
    failed = sum(1 for r in records if r.status == "failed")
    found = ExitCode.FINDINGS if failed or problems else ExitCode.OK
    if output_format == "json":
        click.echo(json.dumps([_as_dict(r, problems) for r in records], indent=2))
        return found
    click.echo(format_table(records, problems, manager.idle()))
    blocked = sum(1 for r in records if r.status == "blocked")
    loaded = len(records) - failed - blocked
    summary = f"{loaded} loaded, {failed} failed, {blocked} blocked"
    if problems:
        summary += f"; {len(problems)} contribution problem{'s' if len(problems) > 1 else ''}"
    click.echo(summary)
    return found


def _as_dict(record: PluginRecord, problems: Sequence[ContributionProblem]) -> dict[str, Any]:
    return {
        **record.as_dict(),
        "problems": [p.as_dict() for p in problems if p.plugin == record.name],
    }
