"""The ``crank`` command line, the only layer that turns outcomes into exit codes.

Commands return an :class:`~crank.errors.ExitCode` or raise a
:class:`~crank.errors.CrankError`; :class:`~crank.cli.group.CrankGroup` turns
either into the exit status. :func:`main` adds what happens outside a command:
click's own usage errors and an interrupt.
"""

from __future__ import annotations

import sys
import warnings
from typing import Any, TextIO

import click

from crank import DISTRIBUTION
from crank.cli.group import CrankGroup
from crank.errors import ExitCode
from crank.plugins import PluginLoadWarning


@click.group("crank", cls=CrankGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name=DISTRIBUTION, prog_name="crank")
def cli() -> None:
    """crank: plugin-based workers with manifests, routing, a durable queue and
    deployment artifacts that never drift."""


def _show_plugin_warnings_plainly() -> None:
    """A plugin that fails to load is reported as one ``warning:`` line, not a
    Python warning with a source line."""
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


def _blocked_note(exc: click.ClickException) -> str:
    """For an unknown command while plugins are blocked: which ones (blocking
    crank.cli.builtin takes crank's own commands away, `crank plugins` included)."""
    if not exc.format_message().startswith("No such command"):
        return ""
    from crank.plugins.loading import DISABLE_ENV, blocked_names

    blocked = sorted(blocked_names())
    if not blocked:
        return ""
    return f"; {DISABLE_ENV} blocks {', '.join(blocked)}, and so the commands they add"


def main(argv: list[str] | None = None) -> Any:
    """Console-script entry point: returns the exit status (or exits with it)."""
    _show_plugin_warnings_plainly()
    try:
        return cli.main(args=argv, prog_name="crank", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(ExitCode.INTERRUPTED)
    except click.exceptions.NoArgsIsHelpError as exc:
        # a group given no command (plain `crank`, `crank migration`) is no mistake to
        # report: its help, on stderr with exit status 2, as click's own groups answer
        exc.show()
        sys.exit(exc.exit_code)
    except click.ClickException as exc:  # click's usage errors (bad option, no such command)
        # in crank's own format (docs/cli.md): what is wrong, then where to read how
        ctx = getattr(exc, "ctx", None)
        where = ctx.command_path if ctx is not None else "crank"
        click.echo(f"error: {exc.format_message()}", err=True)
        click.echo(f"  hint: see `{where} --help`{_blocked_note(exc)}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(ExitCode.INTERRUPTED)


__all__ = ["cli", "main"]
