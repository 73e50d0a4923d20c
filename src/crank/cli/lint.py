"""``crank lint`` and ``crank schema``."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

from crank.cli.options import format_option, today_option
from crank.errors import ExitCode
from crank.manifest.lint import LINT_RULES, Linter
from crank.manifest.report import render
from crank.manifest.validate import manifest_schema
from crank.plugins import blocked_lint_rules, get_plugin_manager

if TYPE_CHECKING:
    import datetime as dt

    from crank.annotations import ReportFormat
    from crank.manifest.lint import LintRule
    from crank.plugins import CrankPluginManager


def collect_rules(manager: CrankPluginManager | None = None) -> list[LintRule]:
    """Every lint rule the plugins register (crank's own included), sorted by id."""
    found = (manager or get_plugin_manager()).collect(LINT_RULES)
    return [found[rule_id].value for rule_id in sorted(found)]


@click.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=str))
@format_option("text", "json", "github")
@click.option("--strict", is_flag=True, help="Fail on warnings too.")
@today_option
def lint(
    paths: tuple[str, ...], output_format: ReportFormat, strict: bool, today: dt.date | None
) -> ExitCode:
    """Validate manifests against the schema and every lint rule.

    PATHS are manifest files or directories searched for crank.yaml and
    *.crank.yaml (default: the current directory). Exit status: 0 clean
    (warnings alone do not fail unless --strict), 1 findings, 2 usage error.

    \b
    A manifest turns rules off for itself with a comment:
        # crank-lint: disable=CRK106,CRK109
    """
    manager = get_plugin_manager()
    blocked = [r for r in manager.records if r.status == "blocked"]
    linter = Linter(
        collect_rules(manager),
        today=today,
        installed_paths=manager.manifest_paths(),
        blocked_rules=blocked_lint_rules(blocked),
        blocked_plugins=[r.name for r in blocked if not r.builtin],
    )
    result = linter.lint_paths(paths or (".",))
    click.echo(render(result, output_format), nl=False)
    return ExitCode.FINDINGS if result.failed(strict=strict) else ExitCode.OK


@click.command()
@click.option(
    "--version",
    "schema_version",
    type=click.Choice(["v1"]),
    default="v1",
    show_default=True,
    help="Manifest format version.",
)
def schema(schema_version: str) -> ExitCode:
    """Print the manifest JSON Schema (apiVersion crank.dev/VERSION)."""
    click.echo(json.dumps(manifest_schema(f"crank.dev/{schema_version}"), indent=2))
    return ExitCode.OK
