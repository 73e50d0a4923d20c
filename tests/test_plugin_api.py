"""``crank.plugin``: the one public module of plugin authors, and the typed hookspecs."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
import typing
from collections.abc import Callable
from pathlib import Path

import click
import pytest

import crank.plugin
from crank import hookspecs

REPO = Path(__file__).resolve().parents[1]
HOOKS = sorted(n for n in dir(hookspecs) if n.startswith("crank_"))


def test_every_public_name_resolves() -> None:
    for name in crank.plugin.__all__:
        assert getattr(crank.plugin, name) is not None, name
    with pytest.raises(AttributeError, match="has no attribute 'Nope'"):
        _ = crank.plugin.Nope  # type: ignore[attr-defined]


def test_the_facade_hands_out_the_real_types() -> None:
    from crank.generate.render import ArtifactRenderer
    from crank.manifest.lint import LintContext, LintRule
    from crank.runtime.config import RuntimeConfig
    from crank.testing.dependencies import DependencyChecker, DependencyResult

    assert crank.plugin.LintRule is LintRule
    assert crank.plugin.LintContext is LintContext
    assert crank.plugin.ArtifactRenderer is ArtifactRenderer
    assert crank.plugin.DependencyChecker is DependencyChecker
    assert crank.plugin.DependencyResult is DependencyResult
    assert crank.plugin.RuntimeConfig is RuntimeConfig
    assert crank.plugin.hookimpl is hookspecs.hookimpl


@pytest.mark.parametrize("hook", HOOKS)
def test_each_hookspec_is_typed_and_documented(hook: str) -> None:
    spec = getattr(hookspecs, hook)
    names = {name: getattr(crank.plugin, name) for name in crank.plugin.__all__}
    names |= {"Callable": Callable, "PathLike": os.PathLike, "click": click}
    hints = typing.get_type_hints(spec, names)
    assert "Any" not in str(hints), hints
    assert hints.pop("return") is type(None)
    doc = inspect.getdoc(spec) or ""
    assert doc.startswith("Called "), doc  # when it is called comes first
    for param in inspect.signature(spec).parameters:
        assert f":param {param}:" in doc
    assert ":return:" in doc
    assert ".. versionadded::" in doc


@pytest.mark.parametrize(
    ("hook", "alias"),
    [
        ("crank_register_commands", "RegisterCommand"),
        ("crank_register_lint_rules", "RegisterLintRule"),
        ("crank_register_renderers", "RegisterRenderer"),
        ("crank_register_dependency_checkers", "RegisterDependencyChecker"),
        ("crank_register_workers", "RegisterWorker"),
    ],
)
def test_register_callbacks_are_typed_with_the_facade_aliases(hook: str, alias: str) -> None:
    assert getattr(hookspecs, hook).__annotations__ == {"register": alias, "return": "None"}


def test_importing_the_facade_is_light() -> None:
    code = "import crank.plugin, sys; print(','.join(sorted(sys.modules)))"
    modules = set(
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
        )
        .stdout.strip()
        .split(",")
    )
    assert {"yaml", "jsonschema", "crank.manifest.lint", "crank.runtime"} & modules == set()


def test_installed_workers_are_the_registered_manifests(tmp_path: Path) -> None:
    from crank.hookspecs import hookimpl
    from crank.plugins import get_plugin_manager

    manifest = REPO / "plugins" / "crank-text-streamer" / "src" / "crank_text_streamer"
    extra = tmp_path / "crank.yaml"
    extra.write_text((manifest / "crank.yaml").read_text().replace("text-streamer", "extra-one"))

    class Registers:
        @hookimpl
        def crank_register_workers(self, register: Callable[..., None]) -> None:
            register(extra)

    manager = get_plugin_manager()
    manager.register(Registers(), name="registers-extra")
    try:
        found = crank.plugin.installed_workers()
    finally:
        manager.unregister("registers-extra")
    assert (extra, "extra-one") in [(path, m.name) for path, m in found]
