"""Everything a crank plugin author needs, in one public module.

A plugin is a module (or object) with ``crank_*`` hook implementations, found
through the ``crank`` entry-point group. The hooks and what they receive are
documented in :mod:`crank.hookspecs`; every type they receive or return is
importable from here, and nowhere else is promised to stay put::

    from crank.plugin import hookimpl

    if TYPE_CHECKING:
        from crank.plugin import LintContext, RegisterLintRule

    @hookimpl
    def crank_register_lint_rules(register: RegisterLintRule) -> None:
        register(MyRule())

Names resolve on first use: ``from crank.plugin import hookimpl`` costs nothing
at start-up (plugins are imported by every ``crank`` command), while
``LintContext`` and friends import their modules when first asked for. Import
types used only in annotations under ``TYPE_CHECKING``. docs/plugins.md walks
through a complete example package.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any, TypeAlias

from crank.hookspecs import hookimpl
from crank.plugins import get_plugin_manager

if TYPE_CHECKING:
    from collections.abc import Callable
    from os import PathLike
    from pathlib import Path

    import click

    from crank.cli.group import LazyCommand
    from crank.errors import ExitCode
    from crank.generate.project import WorkerProject
    from crank.generate.render import STAMP_SLOT, ArtifactRenderer, RenderedFile, stamp, stamped
    from crank.manifest import Capability, Manifest, SystemDependency
    from crank.manifest.findings import Finding, Severity
    from crank.manifest.lint import LintContext, LintRule
    from crank.manifest.loader import LoadedDocument
    from crank.manifest.rules import FunctionRule
    from crank.runtime.config import RuntimeConfig
    from crank.testing.dependencies import DependencyChecker, DependencyResult
    from crank.testing.specs import DependencySpec

# What each gathering hook's ``register`` callback accepts (strings, so that naming
# them imports nothing; type checkers read them as the real callables).
#: ``crank_register_commands``: a click command, or a :class:`LazyCommand`.
RegisterCommand: TypeAlias = "Callable[[click.Command | LazyCommand], None]"
#: ``crank_register_lint_rules``: a :class:`LintRule`.
RegisterLintRule: TypeAlias = "Callable[[LintRule], None]"
#: ``crank_register_renderers``: an :class:`ArtifactRenderer`.
RegisterRenderer: TypeAlias = "Callable[[ArtifactRenderer], None]"
#: ``crank_register_dependency_checkers``: ``register(kind, checker)``.
RegisterDependencyChecker: TypeAlias = "Callable[[str, DependencyChecker], None]"
#: ``crank_register_workers``: the path of a ``crank.yaml``.
RegisterWorker: TypeAlias = "Callable[[str | PathLike[str]], None]"

_LAZY: dict[str, str] = {
    "ArtifactRenderer": "crank.generate.render",
    "Capability": "crank.manifest",
    "DependencyChecker": "crank.testing.dependencies",
    "DependencyResult": "crank.testing.dependencies",
    "DependencySpec": "crank.testing.specs",
    "ExitCode": "crank.errors",
    "Finding": "crank.manifest.findings",
    "FunctionRule": "crank.manifest.rules",
    "LazyCommand": "crank.cli.group",
    "LintContext": "crank.manifest.lint",
    "LintRule": "crank.manifest.lint",
    "LoadedDocument": "crank.manifest.loader",
    "Manifest": "crank.manifest",
    "RenderedFile": "crank.generate.render",
    "RuntimeConfig": "crank.runtime.config",
    "STAMP_SLOT": "crank.generate.render",
    "Severity": "crank.manifest.findings",
    "SystemDependency": "crank.manifest",
    "WorkerProject": "crank.generate.project",
    "stamp": "crank.generate.render",
    "stamped": "crank.generate.render",
}


def installed_workers() -> list[tuple[Path, Manifest]]:
    """``(path of crank.yaml, manifest)`` of every installed worker (a plugin command
    that works on "all workers" starts here)."""
    return list(get_plugin_manager().worker_manifests())


def __getattr__(name: str) -> Any:
    modname = _LAZY.get(name)
    if modname is None:
        raise AttributeError(f"module 'crank.plugin' has no attribute {name!r}")
    value = getattr(import_module(modname), name)
    globals()[name] = value
    return value


__all__ = [
    "STAMP_SLOT",
    "ArtifactRenderer",
    "Capability",
    "DependencyChecker",
    "DependencyResult",
    "DependencySpec",
    "ExitCode",
    "Finding",
    "FunctionRule",
    "LazyCommand",
    "LintContext",
    "LintRule",
    "LoadedDocument",
    "Manifest",
    "RegisterCommand",
    "RegisterDependencyChecker",
    "RegisterLintRule",
    "RegisterRenderer",
    "RegisterWorker",
    "RenderedFile",
    "RuntimeConfig",
    "Severity",
    "SystemDependency",
    "WorkerProject",
    "hookimpl",
    "installed_workers",
    "stamp",
    "stamped",
]
