"""The plugin manager: discovery, failure isolation, blocking, once per process."""

from __future__ import annotations

import importlib
import warnings
from typing import TYPE_CHECKING, Any

import pytest

from crank import plugins
from crank.cli.lint import collect_rules
from crank.hookspecs import hookimpl
from crank.plugins import (
    DISABLE_ENV,
    PluginLoadWarning,
    build_plugin_manager,
    get_plugin_manager,
    reset_plugin_manager,
)

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

BROKEN_WARNING = (
    "crank plugin 'testplugin-broken' (crank_testplugin_broken) failed to load and was "
    "skipped: RuntimeError: testplugin-broken is broken on purpose"
)


def record(manager: plugins.CrankPluginManager, name: str) -> plugins.PluginRecord:
    return next(r for r in manager.records if r.name == name)


def test_a_healthy_plugin_is_loaded_with_its_manifest(
    test_plugins: Any, plugins_on_path: Callable[..., None]
) -> None:
    plugins_on_path(test_plugins.good)
    manager = get_plugin_manager()
    good = record(manager, "testplugin-good")
    assert good.status == "loaded"
    assert (good.distribution, good.version, good.module) == (
        "crank-testplugin-good",
        "1.2.3",
        "crank_testplugin_good",
    )
    assert good.hooks == ("crank_register_commands", "crank_register_lint_rules")
    assert good.manifest_path == test_plugins.good / "crank_testplugin_good" / "crank.yaml"
    assert good.manifest_path in manager.manifest_paths()
    assert "TST001" in [r.id for r in collect_rules()]


def test_a_broken_plugin_is_isolated_and_named(
    test_plugins: Any, plugins_on_path: Callable[..., None]
) -> None:
    plugins_on_path(test_plugins.good, test_plugins.broken)
    with pytest.warns(PluginLoadWarning) as caught:
        manager = get_plugin_manager()
    assert [str(w.message) for w in caught] == [BROKEN_WARNING]
    broken = record(manager, "testplugin-broken")
    assert (broken.status, broken.error) == (
        "failed",
        "RuntimeError: testplugin-broken is broken on purpose",
    )
    assert record(manager, "testplugin-good").status == "loaded"
    assert record(manager, "crank.manifest.rules").status == "loaded"
    # loaded once: no second warning, same manager
    assert get_plugin_manager() is manager


@pytest.mark.parametrize(
    "blocked", ["testplugin-broken", "crank-testplugin-broken", "Crank_Testplugin.Broken"]
)
def test_blocked_plugins_are_never_imported(
    test_plugins: Any, plugins_on_path: Callable[..., None], blocked: str
) -> None:
    plugins_on_path(test_plugins.broken)
    with pytest.warns(PluginLoadWarning, match="names 'other': no installed plugin"):
        manager = build_plugin_manager(environ={DISABLE_ENV: f" other , {blocked}"})
    broken = record(manager, "testplugin-broken")
    assert (broken.status, broken.error) == ("blocked", f"blocked by {DISABLE_ENV}")
    import sys

    assert "crank_testplugin_broken" not in sys.modules


def test_blocking_a_builtin_says_what_crank_then_lacks(tmp_path: Path, run_crank: Any) -> None:
    with pytest.warns(PluginLoadWarning) as caught:
        manager = build_plugin_manager(environ={DISABLE_ENV: "crank.manifest.rules"})
    assert record(manager, "crank.manifest.rules").status == "blocked"
    assert [str(w.message) for w in caught] == [
        "crank's built-in plugin 'crank.manifest.rules' is blocked by CRANK_DISABLE_PLUGINS, "
        "so the lint rules CRK101-CRK107, CRK109-CRK114 and CRK117 are not run; remove it from "
        "CRANK_DISABLE_PLUGINS unless that is meant"
    ]
    # a lint run without those rules says so, not only "no problems"
    manifest = tmp_path / "crank.yaml"
    manifest.write_text(
        "apiVersion: crank.dev/v1\nkind: Worker\nmetadata: {name: demo, version: 1.0.0}\n"
        "worker: {entrypoint: demo.worker:Demo}\ncapabilities: []\n"
    )
    result = run_crank("lint", str(manifest), CRANK_DISABLE_PLUGINS="crank.manifest.rules")
    assert result.stderr.startswith(
        "warning: crank's built-in plugin 'crank.manifest.rules' is blocked by "
        "CRANK_DISABLE_PLUGINS, so the lint rules"
    )


def test_a_blocked_name_that_blocks_nothing_is_said(
    test_plugins: Any, plugins_on_path: Callable[..., None]
) -> None:
    """A typo left the plugin meant loaded without a word."""
    plugins_on_path(test_plugins.good)
    with pytest.warns(PluginLoadWarning) as caught:
        manager = build_plugin_manager(
            environ={DISABLE_ENV: "testplugin-god,crank.manifest.rules"}, builtins=False
        )
    assert record(manager, "testplugin-good").status == "loaded"
    [message] = [str(w.message) for w in caught]
    assert message.startswith(
        "CRANK_DISABLE_PLUGINS names 'testplugin-god': no installed plugin, so it blocks "
        "nothing; give an entry-point name (crank plugins lists them: "
    )
    assert "testplugin-good" in message


def test_a_plugin_calling_sys_exit_on_import_is_isolated(
    tmp_path: Path, plugins_on_path: Callable[..., None]
) -> None:
    """It ended crank (crank lint exited 1 printing only the plugin's text)."""
    info = tmp_path / "crank_testplugin_exiting-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: crank-testplugin-exiting\nVersion: 1.0\n"
    )
    (info / "entry_points.txt").write_text("[crank]\nexiting = crank_testplugin_exiting\n")
    (tmp_path / "crank_testplugin_exiting.py").write_text(
        "import sys\nsys.exit('usage: exiting [options]')\n"
    )
    plugins_on_path(tmp_path)
    with pytest.warns(PluginLoadWarning, match="SystemExit: usage: exiting"):
        manager = build_plugin_manager(environ={})
    exiting = record(manager, "exiting")
    assert (exiting.status, exiting.error) == ("failed", "SystemExit: usage: exiting [options]")
    assert record(manager, "crank.manifest.rules").status == "loaded"


def test_each_builtin_says_what_blocking_it_takes_away() -> None:
    assert set(plugins.loading.BUILTIN_CONTRIBUTIONS) == set(plugins.loading.BUILTIN_PLUGINS)


def test_each_builtin_s_lint_rules_are_known_without_importing_it() -> None:
    """The table that names a blocked built-in's rules is the rules it registers."""
    registered: dict[str, set[str]] = {}
    for name in plugins.loading.BUILTIN_PLUGINS:
        module = importlib.import_module(name)
        register = getattr(module, "crank_register_lint_rules", None)
        if register is not None:
            register(lambda rule, name=name: registered.setdefault(name, set()).add(rule.id))
    assert registered == {k: set(v) for k, v in plugins.loading.BUILTIN_LINT_RULES.items()}


def test_a_failing_builtin_does_not_stop_the_others(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        plugins.loading,
        "BUILTIN_PLUGINS",
        ("crank_builtin_that_is_missing", "crank.manifest.rules"),
    )
    with pytest.warns(PluginLoadWarning, match="crank_builtin_that_is_missing"):
        manager = build_plugin_manager(environ={})
    assert record(manager, "crank_builtin_that_is_missing").status == "failed"
    assert record(manager, "crank.manifest.rules").status == "loaded"


def test_manifests_registered_through_the_hook(tmp_path: Path) -> None:
    extra = tmp_path / "crank.yaml"
    extra.write_text("")  # read only when a command loads the workers

    class Registers:
        @hookimpl
        def crank_register_workers(self, register: Callable[[Any], None]) -> None:
            register(extra)
            register(str(extra))  # the same path twice is listed once

    manager = get_plugin_manager()
    manager.register(Registers(), name="registers-workers")
    try:
        assert manager.manifest_paths().count(extra) == 1
    finally:
        manager.unregister("registers-workers")


def test_reset_builds_a_new_manager() -> None:
    first = get_plugin_manager()
    assert get_plugin_manager() is first
    reset_plugin_manager()
    assert get_plugin_manager() is not first


def test_records_as_dict() -> None:
    rules = record(get_plugin_manager(), "crank.manifest.rules")
    assert rules.as_dict() == {
        "name": "crank.manifest.rules",
        "status": "loaded",
        "module": "crank.manifest.rules",
        "distribution": "crank-workers",
        "version": rules.version,
        "hooks": ["crank_register_lint_rules"],
        "manifest": None,
        "error": None,
        "builtin": True,
    }


class RaisingHooks:
    @hookimpl
    def crank_register_commands(self, register: Callable[[Any], None]) -> None:
        raise RuntimeError("commands exploded")

    @hookimpl
    def crank_register_lint_rules(self, register: Callable[[Any], None]) -> None:
        raise RuntimeError("rules exploded")


def test_a_hook_that_raises_is_skipped_and_named() -> None:
    import click

    from crank.cli import cli

    manager = get_plugin_manager()
    manager.register(RaisingHooks(), name="raising-hooks")
    try:
        with pytest.warns(PluginLoadWarning) as caught:
            rules = collect_rules()
            commands = cli.list_commands(click.Context(cli))
    finally:
        manager.unregister("raising-hooks")
    assert [str(w.message) for w in caught] == [
        "crank plugin 'raising-hooks' failed in crank_register_lint_rules and was skipped: "
        "RuntimeError: rules exploded",
        "crank plugin 'raising-hooks' failed in crank_register_commands and was skipped: "
        "RuntimeError: commands exploded",
    ]
    assert "CRK101" in [r.id for r in rules]
    assert "lint" in commands


def _dist(site: Path, dist: str, entry_point: str, module: str, command: str) -> None:
    info = site / f"{dist.replace('-', '_')}-0.1.dist-info"  # as a wheel names it
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[crank]\n{entry_point} = {module}\n")
    (site / f"{module}.py").write_text(
        "import click\nfrom crank.hookspecs import hookimpl\n\n"
        f"@hookimpl\ndef crank_register_commands(register):\n"
        f"    register(click.Command({command!r}))\n"
    )


@pytest.mark.parametrize(
    ("blocked", "loaded"),
    [("", "crank_testplugin_first"), ("crank-testplugin-first", "crank_testplugin_second")],
)
def test_two_plugins_of_one_name_the_second_is_listed_as_failed_not_dropped(
    tmp_path: Path, plugins_on_path: Callable[..., None], blocked: str, loaded: str
) -> None:
    _dist(tmp_path, "crank-testplugin-first", "twin", "crank_testplugin_first", "first-cmd")
    _dist(tmp_path, "crank-testplugin-second", "twin", "crank_testplugin_second", "second-cmd")
    plugins_on_path(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        manager = build_plugin_manager(environ={DISABLE_ENV: blocked})
    twins = [(r.status, r.module) for r in manager.records if r.name == "twin"]
    if not blocked:
        error = (
            "plugin name 'twin' is taken by 'crank-testplugin-first' (crank_testplugin_first), "
            "so crank_testplugin_second was not loaded; uninstall one, or block one by its "
            f"distribution name with {DISABLE_ENV}"
        )
        assert twins == [("loaded", loaded), ("failed", "crank_testplugin_second")]
        assert [r.error for r in manager.records if r.name == "twin"] == [None, error]
        assert [str(w.message) for w in caught if w.category is PluginLoadWarning] == [
            f"crank plugin 'twin' (crank_testplugin_second) failed to load and was skipped: {error}"
        ]
    else:  # the blocked one leaves the name to the other
        assert twins == [("blocked", "crank_testplugin_first"), ("loaded", loaded)]
