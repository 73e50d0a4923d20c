"""The ``crank`` entry point: help, version, error mapping, and a light start-up."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib import metadata
from typing import TYPE_CHECKING, Any

import click
import pytest
from click.testing import CliRunner

from crank.cli import cli, main
from crank.cli.builtin import BUILTIN_COMMANDS
from crank.errors import DependencyMissing
from crank.hookspecs import hookimpl
from crank.plugins import ENTRY_POINT_GROUP, get_plugin_manager

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

#: Imported lazily by the commands that need them, never by ``crank --help``.
HEAVY = (
    "jsonschema",
    "cookiecutter",
    "docker",
    "onnxruntime",
    "starlette",
    "redis",
    "rich",
    "uvicorn",
    "httpx",
    "numpy",
    "yaml",
)


def test_help_lists_every_builtin_command() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    assert result.output.startswith("Usage: crank [OPTIONS] COMMAND [ARGS]...\n")
    for name, _, short_help in BUILTIN_COMMANDS:
        assert f"  {name.ljust(12)}" in result.output or f"  {name} " in result.output
        assert short_help in result.output


def test_version() -> None:
    result = CliRunner().invoke(cli, ["--version"])
    expected = f"crank, version {metadata.version('crank-workers')}\n"
    assert (result.exit_code, result.output) == (0, expected)


def test_help_imports_nothing_heavy() -> None:
    # third-party plugins are blocked: their imports are their own business
    blocked = ",".join(ep.name for ep in metadata.entry_points(group=ENTRY_POINT_GROUP))
    env = {**os.environ, "CRANK_DISABLE_PLUGINS": blocked}
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "crank", "--help"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "Commands:" in result.stdout
    imported = {
        line.rsplit("|", 1)[-1].strip().split(".")[0]
        for line in result.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert "click" in imported  # the measurement itself works
    assert sorted(imported & set(HEAVY)) == []


class Failing:
    @hookimpl
    def crank_register_commands(self, register: Callable[[Any], None]) -> None:
        @click.command("fail-missing")
        def fail_missing() -> None:
            raise DependencyMissing("pandoc is not installed", hint="apt-get install pandoc")

        @click.command("fail-interrupt")
        def fail_interrupt() -> None:
            raise KeyboardInterrupt

        @click.command("fail-abort")
        def fail_abort() -> None:
            raise click.Abort

        register(fail_missing)
        register(fail_interrupt)
        register(fail_abort)


@pytest.fixture
def failing_commands() -> Iterator[None]:
    manager = get_plugin_manager()
    manager.register(Failing(), name="failing-commands")
    yield
    manager.unregister("failing-commands")


def test_crank_error_becomes_message_hint_and_exit_code(failing_commands: None) -> None:
    result = CliRunner().invoke(cli, ["fail-missing"])
    assert (result.exit_code, result.stdout, result.stderr) == (
        3,
        "",
        "error: pandoc is not installed\n  hint: apt-get install pandoc\n",
    )


def test_main_exit_codes(failing_commands: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fail-missing"]) == 3
    with pytest.raises(SystemExit) as info:
        main(["fail-interrupt"])
    assert info.value.code == 130
    with pytest.raises(SystemExit) as info:
        main(["fail-abort"])
    assert info.value.code == 130
    with pytest.raises(SystemExit) as info:
        main(["no-such-command"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "error: pandoc is not installed\n  hint: apt-get install pandoc\n" in err
    # click turns Ctrl-C inside a command into Abort: both read "aborted"
    assert err.count("aborted\n") == 2
    assert "Error: No such command 'no-such-command'." in err


def test_python_dash_m_crank() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "crank", "schema"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0
    assert '"$id": "https://crank.dev/schemas/manifest/v1.json"' in result.stdout
