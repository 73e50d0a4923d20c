"""``crank plugins``: every plugin with its status; a broken one never hides the rest."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import pytest
from click.testing import CliRunner

from crank.cli import cli
from crank.cli.lint import collect_rules
from crank.cli.plugins import format_table
from crank.contributions import ContributionProblem
from crank.hookspecs import hookimpl
from crank.plugins import PluginLoadWarning, PluginRecord, get_plugin_manager

if TYPE_CHECKING:
    from collections.abc import Callable


def test_table_layout() -> None:
    records = [
        PluginRecord(
            name="crank.manifest.rules",
            status="loaded",
            module="crank.manifest.rules",
            version="0.1.0",
            hooks=("crank_register_lint_rules",),
            builtin=True,
        ),
        PluginRecord(
            name="acme",
            status="loaded",
            module="acme",
            version="2.0.0",
            hooks=("crank_register_commands", "crank_register_lint_rules"),
            manifest_path=Path("/site/acme/crank.yaml"),
        ),
        PluginRecord(name="bad", status="failed", module="bad", error="ImportError: no numpy"),
        PluginRecord(
            name="off", status="blocked", module="off", version="1.0", error="blocked by X"
        ),
    ]
    assert format_table(records) == (
        "NAME                  VERSION  STATUS   HOOKS                                  MANIFEST\n"
        "crank.manifest.rules  0.1.0    loaded   register_lint_rules                    -\n"
        "acme                  2.0.0    loaded   register_commands,register_lint_rules  "
        "/site/acme/crank.yaml\n"
        "bad                   -        failed   -                                      -\n"
        "    error: ImportError: no numpy\n"
        "off                   1.0      blocked  -                                      -\n"
        "    error: blocked by X"
    )


def test_plugins_command_lists_an_installed_plugin(
    test_plugins: Any, plugins_on_path: Callable[..., None]
) -> None:
    plugins_on_path(test_plugins.good)
    manifest = test_plugins.good / "crank_testplugin_good" / "crank.yaml"
    text = CliRunner().invoke(cli, ["plugins"])
    assert text.exit_code == 0
    rows = {line.split()[0]: line.split() for line in text.output.splitlines()[1:-1]}
    assert rows["testplugin-good"] == [
        "testplugin-good",
        "1.2.3",
        "loaded",
        "register_commands,register_lint_rules",
        str(manifest),
    ]
    assert rows["crank.manifest.rules"][2:4] == ["loaded", "register_lint_rules"]
    assert text.output.splitlines()[-1].endswith(" loaded, 0 failed, 0 blocked")

    data = json.loads(CliRunner().invoke(cli, ["plugins", "--format", "json"]).output)
    good = next(p for p in data if p["name"] == "testplugin-good")
    assert good == {
        "name": "testplugin-good",
        "status": "loaded",
        "module": "crank_testplugin_good",
        "distribution": "crank-testplugin-good",
        "version": "1.2.3",
        "hooks": ["crank_register_commands", "crank_register_lint_rules"],
        "manifest": str(manifest),
        "error": None,
        "builtin": False,
        "problems": [],
    }


def test_a_plugin_adds_a_command(test_plugins: Any, plugins_on_path: Callable[..., None]) -> None:
    plugins_on_path(test_plugins.good)
    result = CliRunner().invoke(cli, ["hello-testplugin", "crank"])
    assert (result.exit_code, result.output) == (0, "hello crank from crank-testplugin-good\n")
    assert (
        "hello-testplugin  Say hello (a command added by a plugin)."
        in CliRunner().invoke(cli, ["--help"]).output
    )


def test_broken_plugin_is_listed_as_failed_and_the_rest_work(
    test_plugins: Any, run_crank: Any
) -> None:
    result = run_crank(
        "plugins", "--format", "json", pythonpath=[test_plugins.good, test_plugins.broken]
    )
    assert result.returncode == 1  # found a problem: a CI step can tell
    by_name = {p["name"]: p for p in json.loads(result.stdout)}
    assert by_name["testplugin-good"]["status"] == "loaded"
    assert by_name["testplugin-broken"]["status"] == "failed"
    assert by_name["testplugin-broken"]["error"] == (
        "RuntimeError: testplugin-broken is broken on purpose"
    )
    assert result.stderr == (
        "warning: crank plugin 'testplugin-broken' (crank_testplugin_broken) failed to load and "
        "was skipped: RuntimeError: testplugin-broken is broken on purpose\n"
    )

    text = run_crank("plugins", pythonpath=[test_plugins.good, test_plugins.broken])
    assert text.returncode == 1
    lines = text.stdout.splitlines()
    broken = next(i for i, line in enumerate(lines) if line.startswith("testplugin-broken "))
    assert lines[broken].split() == ["testplugin-broken", "0.0.1", "failed", "-", "-"]
    assert lines[broken + 1] == "    error: RuntimeError: testplugin-broken is broken on purpose"
    assert lines[-1].endswith(" loaded, 1 failed, 0 blocked")

    # the plugin's command still works next to the broken one
    hello = run_crank("hello-testplugin", pythonpath=[test_plugins.good, test_plugins.broken])
    assert (hello.returncode, hello.stdout) == (0, "hello world from crank-testplugin-good\n")


def test_blocked_plugin_is_listed_and_not_imported(test_plugins: Any, run_crank: Any) -> None:
    result = run_crank(
        "plugins",
        "--format",
        "json",
        pythonpath=[test_plugins.broken],
        CRANK_DISABLE_PLUGINS="testplugin-broken",
    )
    assert (result.returncode, result.stderr) == (0, "")
    broken = next(p for p in json.loads(result.stdout) if p["name"] == "testplugin-broken")
    assert (broken["status"], broken["error"]) == ("blocked", "blocked by CRANK_DISABLE_PLUGINS")


def test_problems_are_listed_under_their_plugin() -> None:
    records = [
        PluginRecord(name="acme", status="loaded", module="acme", version="2.0.0"),
        PluginRecord(name="other", status="loaded", module="other", version="1.0"),
    ]
    problems = [
        ContributionProblem(
            "acme", "crank_register_commands", "failed", "failed in crank_register_commands"
        ),
        ContributionProblem("other", "crank_register_renderers", "unusable", "sent a string"),
    ]
    assert format_table(records, problems) == (
        "NAME   VERSION  STATUS  HOOKS  MANIFEST\n"
        "acme   2.0.0    loaded  -      -\n"
        "    problem: failed in crank_register_commands\n"
        "other  1.0      loaded  -      -\n"
        "    problem: sent a string"
    )


class Clashing:
    @hookimpl
    def crank_register_commands(self, register: Callable[[Any], None]) -> None:
        register(click.Command("lint", help="not crank's lint"))

    @hookimpl
    def crank_register_renderers(self, register: Callable[[Any], None]) -> None:
        raise RuntimeError("renderers exploded")


def test_plugins_command_gathers_and_shows_contribution_problems() -> None:
    manager = get_plugin_manager()
    manager.register(Clashing(), name="clashing")
    try:
        with pytest.warns(PluginLoadWarning):
            text = CliRunner().invoke(cli, ["plugins"])
            data = CliRunner().invoke(cli, ["plugins", "--format", "json"])
    finally:
        manager.unregister("clashing")
    assert text.exit_code == 1  # problems found: a script or CI step can tell
    lines = text.stdout.splitlines()
    row = next(i for i, line in enumerate(lines) if line.startswith("clashing "))
    assert lines[row].split()[:4] == [
        "clashing",
        "-",
        "loaded",
        "register_commands,register_renderers",
    ]
    assert lines[row + 1 : row + 3] == [
        "    problem: registered command 'lint', which was skipped: command 'lint' is "
        "registered twice ('crank.cli.builtin' registered it first)",
        "    problem: failed in crank_register_renderers and was skipped: "
        "RuntimeError: renderers exploded",
    ]
    assert lines[-1].endswith(" loaded, 0 failed, 0 blocked; 2 contribution problems")
    assert data.exit_code == 1
    by_name = {p["name"]: p for p in json.loads(data.stdout)}
    assert all(p["problems"] == [] for name, p in by_name.items() if name != "clashing")
    assert [(p["hook"], p["kind"]) for p in by_name["clashing"]["problems"]] == [
        ("crank_register_commands", "duplicate"),
        ("crank_register_renderers", "failed"),
    ]


class LazyBroken:
    @hookimpl
    def crank_register_commands(self, register: Callable[[Any], None]) -> None:
        from crank.plugin import LazyCommand

        register(LazyCommand("gone", "crank_no_such_module:command", "a module not shipped"))
        register(LazyCommand("misnamed", "crank.cli.plugins:no_such_command", "a typo"))
        register(LazyCommand("not-a-command", "crank.cli.plugins:COLUMNS", "a tuple"))


@pytest.mark.parametrize(
    ("command", "why"),
    [
        (
            "gone",
            "crank_no_such_module:command: ModuleNotFoundError: No module named "
            "'crank_no_such_module'",
        ),
        (
            "misnamed",
            "crank.cli.plugins:no_such_command: AttributeError: module "
            "'crank.cli.plugins' has no attribute 'no_such_command'",
        ),
        (
            "not-a-command",
            "crank.cli.plugins:COLUMNS: TypeError: crank.cli.plugins:COLUMNS is "
            "('NAME', 'VERSION', 'STATUS', 'HOOKS', 'MANIFEST'), not a click command",
        ),
    ],
)
def test_a_lazy_command_that_cannot_be_loaded_is_named_with_its_plugin(
    command: str, why: str
) -> None:
    manager = get_plugin_manager()
    manager.register(LazyBroken(), name="lazy-broken")
    try:
        listed = CliRunner().invoke(cli, ["--help"])
        result = CliRunner().invoke(cli, [command])
    finally:
        manager.unregister("lazy-broken")
    assert listed.exit_code == 0 and f"  {command} " in listed.stdout
    assert result.exit_code == 4
    assert result.stderr == (
        f"error: command {command!r} of plugin 'lazy-broken' cannot be loaded from {why}\n"
        "  hint: a bug in the plugin: report it to its authors, or disable it with "
        "CRANK_DISABLE_PLUGINS=lazy-broken\n"
    )


def _explode() -> None:
    raise ValueError("the plugin's own bug")


class BuggyCommand:
    @hookimpl
    def crank_register_commands(self, register: Callable[[Any], None]) -> None:
        register(click.Command("buggy", callback=_explode))


def test_a_plugin_command_that_raises_is_named_with_its_own_frames() -> None:
    manager = get_plugin_manager()
    manager.register(BuggyCommand(), name="buggy-plugin")
    try:
        result = CliRunner().invoke(cli, ["buggy"])
    finally:
        manager.unregister("buggy-plugin")
    assert result.exit_code == 4
    lines = result.stderr.splitlines()
    assert lines[0] == "error: command 'buggy' of plugin 'buggy-plugin' failed: ValueError: " + (
        "the plugin's own bug"
    )
    # only this file's frames: none of click's or crank's
    assert lines[1].startswith(f'  File "{__file__}", line ') and lines[1].endswith("_explode")
    assert lines[2:] == [
        '    raise ValueError("the plugin\'s own bug")',
        "  hint: a bug in the plugin (the frames above are its own): report it to its authors, "
        "or disable it with CRANK_DISABLE_PLUGINS=buggy-plugin",
    ]
    assert "Traceback" not in result.stderr


def test_crank_own_command_bugs_keep_their_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    import crank.cli.plugins

    def broken(manager: Any) -> Any:
        raise RuntimeError("crank's own bug")

    monkeypatch.setattr(crank.cli.plugins, "gather_problems", broken)
    result = CliRunner().invoke(cli, ["plugins"])
    assert isinstance(result.exception, RuntimeError)  # not reported as a plugin's


def test_an_unknown_command_names_the_blocked_plugins(run_crank: Any) -> None:
    """Blocking crank.cli.builtin takes crank's own commands away; say so, not only
    'No such command'."""
    result = run_crank("plugins", CRANK_DISABLE_PLUGINS="crank.cli.builtin")
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        "warning: crank's built-in plugin 'crank.cli.builtin' is blocked by "
        "CRANK_DISABLE_PLUGINS, so crank's own commands (lint, run, plugins...) are missing; "
        "remove it from CRANK_DISABLE_PLUGINS unless that is meant\n"
        "error: No such command 'plugins'.\n"
        "  hint: see `crank --help`; CRANK_DISABLE_PLUGINS blocks crank.cli.builtin, and so "
        "the commands they add\n"
    )
    plain = run_crank("no-such-command")
    assert plain.stderr.endswith("  hint: see `crank --help`\n")


class PosingAsCrank:
    @hookimpl
    def crank_register_lint_rules(self, register: Callable[[Any], None]) -> None:
        from crank.plugin import FunctionRule

        register(FunctionRule("CRK199", "looks like crank's", lambda ctx: ()))
        register(FunctionRule("POSE001", "its own", lambda ctx: ()))


def test_a_plugin_lint_rule_under_crank_s_prefix_is_a_problem_of_the_plugin() -> None:
    """A CRK199 of a plugin passed for one of crank's own rules in every report."""
    manager = get_plugin_manager()
    manager.register(PosingAsCrank(), name="posing")
    try:
        with pytest.warns(PluginLoadWarning, match="posing"):
            text = CliRunner().invoke(cli, ["plugins"])
        ids = [rule.id for rule in collect_rules(manager)]
    finally:
        manager.unregister("posing")
    assert text.exit_code == 1
    lines = text.stdout.splitlines()
    row = next(i for i, line in enumerate(lines) if line.startswith("posing "))
    assert lines[row + 1] == (
        "    problem: registered an unusable lint rule, which was skipped: lint rule id "
        "'CRK199' starts with CRK, which only crank's own lint rules use"
    )
    assert lines[-1].endswith("; 1 contribution problem")
    assert "POSE001" in ids
    assert "CRK199" not in ids


def _installed_without_its_manifest(site: Path) -> Path:
    """A worker package 'installed' (a dist-info with its crank entry point) whose wheel
    left out its crank.yaml: the module imports, and nothing beside it says what it does."""
    (site / "manifestless_worker").mkdir(parents=True)
    (site / "manifestless_worker" / "__init__.py").write_text("")
    info = site / "manifestless_worker-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: manifestless-worker\nVersion: 0.1.0\n"
    )
    (info / "entry_points.txt").write_text("[crank]\nmanifestless = manifestless_worker\n")
    return site


NOTE = (
    "plugin 'manifestless' (manifestless_worker) adds nothing: it implements no hook and "
    "has no crank.yaml beside its module (a worker package must ship its crank.yaml "
    "inside the package, as package data)"
)


def test_a_plugin_that_adds_nothing_is_explained(
    tmp_path: Path, plugins_on_path: Callable[..., None]
) -> None:
    plugins_on_path(_installed_without_its_manifest(tmp_path))
    result = CliRunner().invoke(cli, ["plugins"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    row = next(i for i, line in enumerate(lines) if line.startswith("manifestless "))
    assert lines[row].split() == ["manifestless", "0.1.0", "loaded", "-", "-"]
    assert lines[row + 1] == f"    note: {NOTE}"
    assert sum("note:" in line for line in lines) == 1  # the others each add something


def test_crank_run_with_no_worker_names_a_plugin_that_adds_nothing(
    tmp_path: Path, plugins_on_path: Callable[..., None], monkeypatch: pytest.MonkeyPatch
) -> None:
    """It said only "no installed worker to serve: pip install a worker package", of a
    worker package installed without its crank.yaml."""
    from crank.plugins import reset_plugin_manager

    # every other installed worker blocked: only the one without its manifest is left
    others = [r.name for r in get_plugin_manager().records if r.manifest_path is not None]
    monkeypatch.setenv("CRANK_DISABLE_PLUGINS", ",".join(others))
    plugins_on_path(_installed_without_its_manifest(tmp_path))
    reset_plugin_manager()
    result = CliRunner().invoke(cli, ["run", "--port", "1"])
    assert result.exit_code == 2, result.output
    assert result.stderr == (
        f"error: no installed worker to serve; {NOTE}\n"
        "  hint: pip install a worker package, or name one with --worker PATH/TO/crank.yaml\n"
    )
