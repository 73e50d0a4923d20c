"""A click group whose commands come from plugins, built-in ones imported lazily.

It is also the one place where a command's outcome becomes the process exit
status: a command returns an :class:`~crank.errors.ExitCode` (``FINDINGS`` when
it found problems), or raises a :class:`~crank.errors.CrankError`, which is
reported here (``error:``/``hint:`` lines) and exits with the error's code.
"""

from __future__ import annotations

import errno
import importlib
import os
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from crank.contributions import ContributionKind
from crank.errors import CrankError, ExitCode, PluginError, UsageError, ValidationFailed
from crank.plugins import get_plugin_manager


@dataclass(frozen=True)
class LazyCommand:
    """A command known by name and one-line help; its module is imported on use.

    ``crank --help`` lists every command without importing any of them.
    """

    name: str
    target: str  # "package.module:attribute"
    short_help: str

    def load(self) -> click.Command:
        module, _, attr = self.target.partition(":")
        command = getattr(importlib.import_module(module), attr)
        if not isinstance(command, click.Command):
            raise TypeError(f"{self.target} is {command!r}, not a click command")
        return command


def _accept_command(command: object) -> tuple[str, click.Command | LazyCommand]:
    if not isinstance(command, click.Command | LazyCommand) or not command.name:
        raise PluginError(
            f"crank_register_commands got {command!r}, expected a named click.Command",
            hint="register a click.Command (or a crank.plugin.LazyCommand) with a name",
            subject=command,
        )
    return command.name, command


#: ``crank`` subcommands, gathered through ``crank_register_commands``.
COMMANDS: ContributionKind[click.Command | LazyCommand] = ContributionKind(
    "crank_register_commands", "command", _accept_command
)


def report_error(error: CrankError) -> None:
    """``error: message``, the located problems of an invalid input, and ``  hint: ...``
    on stderr: how every command reports failure."""
    click.echo(f"error: {error.message}", err=True)
    if isinstance(error, ValidationFailed):
        for problem in error.errors:
            click.echo(f"  {problem['path']}: {problem['message']}", err=True)
    if error.hint:
        click.echo(f"  hint: {error.hint}", err=True)


def name_too_long(exc: OSError) -> UsageError:
    """The usage error of a path the operating system refuses as too long (a name of
    more than 255 bytes, say): it can come from any look at a path a user typed, so it
    is caught once here rather than around each of them."""
    name = str(exc.filename) if exc.filename is not None else "a path"
    shown = name if len(name) <= 60 else f"{name[:40]}...{name[-12:]}"
    size = len(os.fsencode(name))
    return UsageError(
        f"file name too long: {shown!r} ({size:,} bytes; most file systems allow at most "
        "255 bytes per name and 4,096 per path)",
        hint="use a shorter path",
        subject=name,
    )


#: the plugin that registers crank's own commands.
BUILTIN_COMMANDS_PLUGIN = "crank.cli.builtin"


def _frames_of(plugin: object, exc: BaseException) -> str:
    """The traceback of ``exc`` cut to the frames in ``plugin``'s package (its
    innermost frame when none is there)."""
    origin = getattr(plugin, "__file__", None) or getattr(
        sys.modules.get(type(plugin).__module__), "__file__", None
    )
    # a package's folder, or a one-file module itself (not the site-packages beside it)
    home = None if origin is None else Path(origin)
    if home is not None and home.name == "__init__.py":
        home = home.parent
    frames = traceback.extract_tb(exc.__traceback__)
    own = [f for f in frames if home is not None and Path(f.filename).is_relative_to(home)]
    return "".join(traceback.format_list(own or frames[-1:])).rstrip("\n")


def exit_status(outcome: object) -> int:
    """The exit status of what a command returned: its ExitCode (a plugin's command
    may return a plain int); anything else, None included, is OK."""
    if isinstance(outcome, int) and not isinstance(outcome, bool):
        return int(outcome)
    return ExitCode.OK


class CrankGroup(click.Group):
    """Resolves subcommands through the ``crank_register_commands`` hook.

    A command's returned :class:`~crank.errors.ExitCode`, or the code of a
    :class:`~crank.errors.CrankError` escaping it (reported as its message and
    hint), becomes the exit status here and only here.
    """

    _cache: tuple[object, dict[str, click.Command | LazyCommand], dict[str, str]] | None = None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            status = exit_status(super().invoke(ctx))
        except CrankError as exc:
            report_error(exc)
            raise click.exceptions.Exit(int(exc.exit_code)) from None
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as exc:
            if isinstance(exc, OSError) and exc.errno == errno.ENAMETOOLONG:
                report_error(name_too_long(exc))
                raise click.exceptions.Exit(ExitCode.USAGE) from None
            failure = self._plugin_failure(ctx, exc)
            if failure is None:
                raise
            raise failure from None
        if status != ExitCode.OK:
            raise click.exceptions.Exit(status)
        return ExitCode.OK

    def _plugin_failure(self, ctx: click.Context, exc: Exception) -> click.exceptions.Exit | None:
        """Report a third-party command's bug by its plugin, with the plugin's own frames.

        None for crank's own commands: their bugs keep Python's whole traceback.
        """
        name = ctx.invoked_subcommand
        if name is None or name in self.commands:
            return None
        plugin = self._plugin_of(name)
        if plugin in ("?", BUILTIN_COMMANDS_PLUGIN):
            return None
        frames = _frames_of(get_plugin_manager().pm.get_plugin(plugin), exc)
        report_error(
            PluginError(
                f"command {name!r} of plugin {plugin!r} failed: {type(exc).__name__}: {exc}"
                + (f"\n{frames}" if frames else ""),
                hint="a bug in the plugin (the frames above are its own): report it to its "
                f"authors, or disable it with CRANK_DISABLE_PLUGINS={plugin}",
                subject=name,
            )
        )
        return click.exceptions.Exit(PluginError.exit_code)

    def _registered(self) -> dict[str, click.Command | LazyCommand]:
        manager = get_plugin_manager()
        # rebuilt when the set of plugins changes (a plugin registered in-process,
        # or the manager rebuilt after installing plugins)
        key = frozenset(id(p) for p in manager.pm.get_plugins())
        cached = self._cache
        if cached is not None and cached[0] == key:
            return cached[1]
        collected = manager.collect(COMMANDS)
        found = {name: c.value for name, c in collected.items()}
        self._cache = (key, found, {name: c.plugin for name, c in collected.items()})
        return found

    def _plugin_of(self, name: str) -> str:
        self._registered()
        return self._cache[2].get(name, "?") if self._cache is not None else "?"

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(self.commands) | set(self._registered()))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands:
            return self.commands[cmd_name]
        entry = self._registered().get(cmd_name)
        if isinstance(entry, LazyCommand):
            try:
                return entry.load()
            except Exception as exc:  # the plugin's mistake, named like its other ones
                plugin = self._plugin_of(cmd_name)
                raise PluginError(
                    f"command {cmd_name!r} of plugin {plugin!r} cannot be loaded from "
                    f"{entry.target}: {type(exc).__name__}: {exc}",
                    hint="a bug in the plugin: report it to its authors, or disable it with "
                    f"CRANK_DISABLE_PLUGINS={plugin}",
                    subject=entry,
                ) from exc
        return entry

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows: list[tuple[str, str]] = []
        limit = formatter.width - 6 - max((len(n) for n in self.list_commands(ctx)), default=0)
        for name in self.list_commands(ctx):
            entry: Any = self.commands.get(name) or self._registered()[name]
            if isinstance(entry, LazyCommand):
                rows.append((name, entry.short_help))
            elif not entry.hidden:
                rows.append((name, entry.get_short_help_str(limit)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)
