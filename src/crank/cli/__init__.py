"""The ``crank`` command line: the only place that turns CrankError into exit codes."""

from __future__ import annotations

import sys
from typing import Any, TextIO

import click

from crank import DISTRIBUTION
from crank.cli.group import CrankGroup, report_error


@click.group("crank", cls=CrankGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name=DISTRIBUTION, prog_name="crank")
def cli() -> None:
    """crank: plugin-based workers with manifests, routing, a durable queue and
    deployment artifacts that never drift."""


def _show_plugin_warnings_plainly() -> None:
    """A plugin that fails to load is reported as one ``warning:`` line, not a
    Python warning with a source line."""
    import warnings

    from crank.plugins import PluginLoadWarning

    original = warnings.showwarning

    def show(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: TextIO | None = None,
        line: str | None = None,
    ) -> None:
        if issubclass(category, PluginLoadWarning):
            click.echo(f"warning: {message}", err=True)
        else:
            original(message, category, filename, lineno, file, line)

    warnings.showwarning = show


def main(argv: list[str] | None = None) -> Any:
    """Console-script entry point."""
    from crank.errors import CrankError, ExitCode

    _show_plugin_warnings_plainly()
    try:
        return cli.main(args=argv, prog_name="crank", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(ExitCode.INTERRUPTED)
    except click.ClickException as exc:
        exc.show()
        sys.exit(ExitCode.USAGE if exc.exit_code == 2 else exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except CrankError as exc:
        report_error(exc)
        sys.exit(int(exc.exit_code))
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(ExitCode.INTERRUPTED)


__all__ = ["cli", "main"]
