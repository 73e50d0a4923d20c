"""``crank lint`` and ``crank schema``."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

from crank.cli.options import parse_today, report_format

if TYPE_CHECKING:
    from crank.manifest.lint import LintRule
    from crank.plugins import CrankPluginManager


def collect_rules(manager: CrankPluginManager | None = None) -> list[LintRule]:
    """Every lint rule the plugins register (crank's own included), sorted by id."""
    from crank.manifest.lint import LINT_RULES
    from crank.plugins import get_plugin_manager

    found = (manager or get_plugin_manager()).collect(LINT_RULES)
    return [found[rule_id].value for rule_id in sorted(found)]


@click.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=str))
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "json", "github"]),
    default=None,
    help="Output format. Default: github when GITHUB_ACTIONS=true, else text.",
)
@click.option("--strict", is_flag=True, help="Fail on warnings too.")
@click.option(
    "--today",
    metavar="YYYY-MM-DD",
    hidden=True,
    help="Pretend today is this date (sunset checks).",
)
def lint(
    paths: tuple[str, ...], output_format: str | None, strict: bool, today: str | None
) -> None:
    """Validate manifests against the schema and every lint rule.

    PATHS are manifest files or directories searched for crank.yaml and
    *.crank.yaml (default: the current directory). Exit status: 0 clean
    (warnings alone do not fail unless --strict), 1 findings, 2 usage error.

    \b
    A manifest turns rules off for itself with a comment:
        # crank-lint: disable=CRK106,CRK109
    """
    from crank.manifest.lint import Linter
    from crank.manifest.report import render
    from crank.plugins import get_plugin_manager

    output_format = report_format(output_format)
    manager = get_plugin_manager()
    linter = Linter(
        collect_rules(manager), today=parse_today(today), installed_paths=manager.manifest_paths()
    )
    result = linter.lint_paths(paths or (".",))
    click.echo(render(result, output_format), nl=False)  # type: ignore[arg-type]
    if result.failed(strict=strict):
        raise click.exceptions.Exit(1)


@click.command()
@click.option(
    "--version",
    "schema_version",
    type=click.Choice(["v1"]),
    default="v1",
    show_default=True,
    help="Manifest format version.",
)
def schema(schema_version: str) -> None:
    """Print the manifest JSON Schema (apiVersion crank.dev/VERSION)."""
    from crank.manifest.validate import manifest_schema

    click.echo(json.dumps(manifest_schema(f"crank.dev/{schema_version}"), indent=2))
