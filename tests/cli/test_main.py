"""The ``crank`` entry point: help, version, error mapping, and a light start-up."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import pytest
from click.testing import CliRunner

from crank.cli import cli, main
from crank.cli.builtin import BUILTIN_COMMANDS
from crank.errors import DependencyMissing, ExitCode
from crank.hookspecs import hookimpl
from crank.plugins import ENTRY_POINT_GROUP, get_plugin_manager

from ..permissions import crank_unprivileged

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
    # click's own usage errors in crank's format too
    assert "error: No such command 'no-such-command'.\n  hint: see `crank --help`\n" in err


@pytest.mark.parametrize("args", [[], ["migration"]], ids=["crank", "crank migration"])
def test_a_group_without_a_command_prints_its_help(
    args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Plain `crank` printed "error: Usage: ..." and a hint to read the help it had just
    printed; now it answers as click's own groups do: the help on stderr, exit 2."""
    with pytest.raises(SystemExit) as info:
        main(args)
    assert info.value.code == ExitCode.USAGE
    out, err = capsys.readouterr()
    help_text = CliRunner().invoke(cli, [*args, "--help"]).stdout
    assert (out, err) == ("", help_text)
    assert err.startswith(f"Usage: {' '.join(['crank', *args])} [OPTIONS] COMMAND [ARGS]...")


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


def _builtin_commands() -> Iterator[tuple[str, click.Command]]:
    for name, _, _ in BUILTIN_COMMANDS:
        command = cli.get_command(click.Context(cli), name)
        assert command is not None
        if isinstance(command, click.Group):
            for sub in command.list_commands(click.Context(command)):
                yield f"{name} {sub}", command.commands[sub]
        else:
            yield name, command


def test_every_builtin_command_returns_its_exit_code() -> None:
    for name, command in _builtin_commands():
        assert command.callback is not None
        returns = command.callback.__annotations__.get("return")
        assert returns == "ExitCode", f"crank {name} returns {returns!r}, not an ExitCode"


def test_shared_options_are_declared_once() -> None:
    from crank.cli import options

    sources = {
        path.name: path.read_text(encoding="utf-8")
        for path in Path(options.__file__).parent.glob("*.py")
    }
    for option in ('"--format"', '"--today"', '"--manifest"', '"--project"', '"worker_paths"'):
        declared = sorted(name for name, text in sources.items() if option in text)
        assert declared == ["options.py"], f"{option} is declared in {declared}"
    # and every command offering --format gets the same option
    helps = {
        (tuple(p.type.choices), p.help)  # type: ignore[attr-defined]
        for _, command in _builtin_commands()
        for p in command.params
        if p.name == "output_format"
    }
    assert helps == {
        (("text", "json"), "Output format."),
        (
            ("text", "json", "github"),
            "Output format. Default: github when GITHUB_ACTIONS=true, else text.",
        ),
    }


class Returning:
    @hookimpl
    def crank_register_commands(self, register: Callable[[Any], None]) -> None:
        @click.command("returns-findings")
        def returns_findings() -> ExitCode:
            click.echo("found 2 problems")
            return ExitCode.FINDINGS

        @click.command("returns-seven")
        def returns_seven() -> int:
            return 7

        @click.command("returns-nothing")
        def returns_nothing() -> None:
            click.echo("done")

        register(returns_findings)
        register(returns_seven)
        register(returns_nothing)


@pytest.mark.parametrize(
    ("command", "status", "output"),
    [
        ("returns-findings", 1, "found 2 problems\n"),
        ("returns-seven", 7, ""),
        ("returns-nothing", 0, "done\n"),
    ],
)
def test_a_command_returns_its_exit_status(command: str, status: int, output: str) -> None:
    manager = get_plugin_manager()
    manager.register(Returning(), name="returning-commands")
    try:
        result = CliRunner().invoke(cli, [command])
        assert main([command]) == status
    finally:
        manager.unregister("returning-commands")
    assert (result.exit_code, result.stdout) == (status, output)


def test_invalid_input_is_reported_with_each_located_problem(tmp_path: Path) -> None:
    from crank.cli.group import report_error
    from crank.errors import ValidationFailed

    runner = CliRunner()
    with runner.isolation() as (_, _, err):
        report_error(
            ValidationFailed(
                "input of demo.echo is invalid",
                errors=[{"path": "$.text", "message": "'text' is a required property"}],
                hint="see the capability's input schema",
            )
        )
        written = err.getvalue().decode()  # type: ignore[union-attr]
    assert written == (
        "error: input of demo.echo is invalid\n"
        "  $.text: 'text' is a required property\n"
        "  hint: see the capability's input schema\n"
    )


INVALID_MANIFEST = "apiVersion: crank.dev/v1\nkind: Nope\n"


@pytest.mark.parametrize(
    "args",
    [
        ["run", "--worker", "crank.yaml", "--max-workers", "0", "--port", "1"],
        ["routes", "--worker", "crank.yaml"],
        ["invoke", "x.y", "--input", "{}", "--worker", "crank.yaml"],
        ["render", "dockerfile", "--manifest", "crank.yaml"],
        ["check"],
        ["test-worker", "crank.yaml"],
        ["migration", "new", "x", "--manifest", "crank.yaml"],
        ["compat", "crank.yaml", "crank.yaml"],
    ],
    ids=lambda args: args[0],
)
def test_a_manifest_that_cannot_be_used_is_a_usage_error(
    args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Exit status 2 in every command that needs the manifest (docs/cli.md: input that
    cannot be used), never 1, which says the command ran and found problems."""
    (tmp_path / "crank.yaml").write_text(INVALID_MANIFEST)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    assert "crank.yaml:1:1 CRK002 missing required field 'capabilities'" in result.stderr
    assert "hint: add `capabilities:` here" in result.stderr


def test_lint_reports_a_manifest_that_cannot_be_used_as_findings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "crank.yaml").write_text(INVALID_MANIFEST)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["lint"])
    assert (result.exit_code, result.stderr) == (1, "")
    assert 'crank.yaml:2:7 CRK002 must be "Worker", got a string "Nope" [$.kind]' in result.stdout


def test_a_manifest_that_cannot_be_read_is_a_usage_error_with_a_hint(tmp_path: Path) -> None:
    (tmp_path / "worker").mkdir()
    (tmp_path / "worker" / "crank.yaml").write_text(INVALID_MANIFEST)
    (tmp_path / "worker" / "crank.yaml").chmod(0)
    done = crank_unprivileged(["routes", "--worker", "worker"], cwd=tmp_path)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (
        "error: worker/crank.yaml: cannot read: Permission denied\n"
        "  hint: make the file readable by this user (e.g. chmod a+r), or run as one who can "
        "read it\n"
    )


TOO_LONG = "x" * 300  # more than the 255 bytes a file name may have


@pytest.mark.parametrize(
    "args",
    [
        ["lint", TOO_LONG],
        ["test-worker", TOO_LONG],
        ["routes", "--worker", TOO_LONG],
        ["invoke", "demo.echo", "--input", "{}", "--worker", TOO_LONG],
        ["compat", TOO_LONG, TOO_LONG],
        ["compat", "--against", "HEAD", TOO_LONG],
        ["check", TOO_LONG],
        ["render", "dockerfile", "--project", TOO_LONG],
        ["render", "dockerfile", "--manifest", TOO_LONG],
        ["lock", TOO_LONG],
        ["build", TOO_LONG],
        ["migration", "status", TOO_LONG],
        ["new-worker", "ok9", "--no-input", "--output-dir", TOO_LONG],
    ],
    ids=lambda args: " ".join(a for a in args if a != TOO_LONG),
)
def test_a_file_name_too_long_is_a_usage_error(
    args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the operating system's ENAMETOOLONG escaped from a dozen path checks as a traceback
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == ExitCode.USAGE, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    first, hint = result.stderr.splitlines()
    assert first.startswith("error: file name too long: ")
    assert "bytes; most file systems allow at most 255 bytes per name" in first
    assert hint == "  hint: use a shorter path"
    assert not list(tmp_path.iterdir())
