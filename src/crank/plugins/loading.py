"""Loading plugins: entry-point discovery, failure isolation, blocked names.

Plugins are loaded once per process, behind :func:`get_plugin_manager`. A plugin
whose import raises is recorded with its error (shown by ``crank plugins`` and
warned about once) and never takes crank down. ``CRANK_DISABLE_PLUGINS=a,b``
stops the named plugins before they are imported.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
import re
import threading
import warnings
from dataclasses import replace
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

import pluggy

from crank import DISTRIBUTION, hookspecs
from crank.plugins.manager import CrankPluginManager, PluginRecord, hook_names
from crank.plugins.registry import PluginLoadWarning

if TYPE_CHECKING:
    from collections.abc import Iterable

ENTRY_POINT_GROUP = "crank"
DISABLE_ENV = "CRANK_DISABLE_PLUGINS"
MANIFEST_NAME = "crank.yaml"

#: crank's own plugins: every built-in command and rule is registered the way a
#: third party would register one.
BUILTIN_PLUGINS: tuple[str, ...] = (
    "crank.cli.builtin",
    "crank.manifest.rules",
    "crank.worker.lint_rules",
    "crank.testing.builtin_checkers",
    "crank.testing.lint_rules",
    "crank.generate.builtin",
)


#: What each built-in plugin gives crank, named when CRANK_DISABLE_PLUGINS blocks it.
BUILTIN_CONTRIBUTIONS: dict[str, str] = {
    "crank.cli.builtin": "crank's own commands (lint, run, plugins...) are missing",
    "crank.manifest.rules": ("the lint rules CRK101-CRK107, CRK109-CRK114 and CRK117 are not run"),
    "crank.worker.lint_rules": "the lint rules CRK108 and CRK115 are not run",
    "crank.testing.builtin_checkers": (
        "dependencies of the kinds module, dist, exe, gpu, onnxruntime, redis and tcp "
        "cannot be checked"
    ),
    "crank.testing.lint_rules": "the lint rule CRK116 is not run",
    "crank.generate.builtin": "crank's own artifacts (Dockerfile, compose, CI...) are not rendered",
}


#: The lint rules each built-in plugin registers, known without importing it: a
#: manifest's ``# crank-lint: disable=`` naming one while its plugin is blocked names a
#: rule that exists, only not run here.
BUILTIN_LINT_RULES: dict[str, tuple[str, ...]] = {
    "crank.manifest.rules": (
        *(f"CRK{n}" for n in range(101, 108)),
        *(f"CRK{n}" for n in range(109, 115)),
        "CRK117",
    ),
    "crank.worker.lint_rules": ("CRK108", "CRK115"),
    "crank.testing.lint_rules": ("CRK116",),
}


def blocked_lint_rules(records: Iterable[PluginRecord]) -> dict[str, str]:
    """Rule id -> the name of the blocked built-in plugin that registers it."""
    return {
        rule_id: r.name
        for r in records
        if r.status == "blocked" and r.builtin
        for rule_id in BUILTIN_LINT_RULES.get(r.name, ())
    }


def blocked_names(environ: dict[str, str] | None = None) -> frozenset[str]:
    raw = (environ if environ is not None else os.environ).get(DISABLE_ENV, "")
    return frozenset(n.strip() for n in raw.split(",") if n.strip())


def _manifest_next_to(module: object) -> Path | None:
    file = getattr(module, "__file__", None)
    if not file:
        return None
    candidate = Path(file).parent / MANIFEST_NAME
    return candidate if candidate.is_file() else None


def _entry_points() -> Iterable[metadata.EntryPoint]:
    return metadata.entry_points(group=ENTRY_POINT_GROUP)


def build_plugin_manager(
    *, environ: dict[str, str] | None = None, builtins: bool = True
) -> CrankPluginManager:
    """Create a manager, load crank's own plugins and every installed one."""
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    manager = CrankPluginManager(pm)
    blocked = blocked_names(environ)
    if builtins:
        for modname in BUILTIN_PLUGINS:
            manager.records.append(_load_builtin(pm, modname, blocked))
    taken: dict[str, metadata.EntryPoint] = {}
    eps = list(_entry_points())
    for ep in sorted(eps, key=lambda e: (e.name, _dist_name(e) or "", e.value)):
        first = taken.get(ep.name)
        if first is None:
            record = _load_entry_point(pm, ep, blocked)
            manager.records.append(record)
            if record.status != "blocked":  # a blocked one leaves its name to the next
                taken[ep.name] = ep
        elif (_dist_name(first), first.value) != (_dist_name(ep), ep.value):
            # another distribution's plugin of the same name: not loaded, but said so
            manager.records.append(_name_taken(ep, first))
    for record in manager.loaded():
        manager.registry.check_hooks(record.name)
    if blocked:
        _warn_unmatched(blocked, eps)
    return manager


def _warn_unmatched(blocked: frozenset[str], eps: list[metadata.EntryPoint]) -> None:
    """A name in CRANK_DISABLE_PLUGINS that blocks nothing is a typo, or a module's name
    where a plugin's is due: the plugin meant is loaded all the same, so say so."""
    # a built-in's name blocks it wherever built-ins load, even where they do not here
    names = {ep.name for ep in eps} | set(BUILTIN_PLUGINS)
    dists = [d for ep in eps if (d := _dist_name(ep)) is not None]
    for name in sorted(blocked):
        if name in names or any(_is_blocked_distribution(d, frozenset({name})) for d in dists):
            continue
        owner = next((ep for ep in eps if ep.value.partition(":")[0] == name), None)
        if owner is not None:
            why = f"the module of plugin {owner.name!r}, which is loaded; block it by that name"
        else:
            known = ", ".join(sorted(names)) or "none"
            why = (
                "no installed plugin, so it blocks nothing; give an entry-point name "
                f"(crank plugins lists them: {known}) or a distribution name"
            )
        warnings.warn(f"{DISABLE_ENV} names {name!r}: {why}", PluginLoadWarning, stacklevel=3)


def _load_builtin(pm: pluggy.PluginManager, modname: str, blocked: frozenset[str]) -> PluginRecord:
    record = PluginRecord(
        name=modname,
        status="loaded",
        module=modname,
        distribution=DISTRIBUTION,
        version=_crank_version(),
        builtin=True,
    )
    if modname in blocked:
        # crank itself is then incomplete: say what is missing wherever crank runs
        missing = BUILTIN_CONTRIBUTIONS.get(modname, "what it registers is missing")
        warnings.warn(
            f"crank's built-in plugin {modname!r} is blocked by {DISABLE_ENV}, so {missing}; "
            f"remove it from {DISABLE_ENV} unless that is meant",
            PluginLoadWarning,
            stacklevel=3,
        )
        return replace(record, status="blocked", error=f"blocked by {DISABLE_ENV}")
    try:
        module = importlib.import_module(modname)
        pm.register(module, name=modname)
    except (Exception, SystemExit) as exc:  # a broken built-in must not take the others down
        error = f"{type(exc).__name__}: {exc}"
        _warn_failed(modname, modname, error)
        return replace(record, status="failed", error=error)
    return replace(record, hooks=hook_names(module, pm))


def _load_entry_point(
    pm: pluggy.PluginManager, ep: metadata.EntryPoint, blocked: frozenset[str]
) -> PluginRecord:
    dist = getattr(ep, "dist", None)
    # one metadata parse per plugin (each .metadata access re-reads the file)
    dist_meta = dist.metadata if dist is not None else None
    dist_name = dist_meta["Name"] if dist_meta is not None else None
    record = PluginRecord(
        name=ep.name,
        status="loaded",
        module=ep.value,
        distribution=dist_name,
        version=dist_meta["Version"] if dist_meta is not None else None,
    )
    if ep.name in blocked or (
        dist_name is not None and _is_blocked_distribution(dist_name, blocked)
    ):
        return replace(record, status="blocked", error=f"blocked by {DISABLE_ENV}")
    try:
        plugin = ep.load()
        pm.register(plugin, name=ep.name)
    # isolation is the point: any failure is reported, a sys.exit() at import included
    except (Exception, SystemExit) as exc:
        error = f"{type(exc).__name__}: {exc}"
        _warn_failed(ep.name, ep.value, error)
        # its manifest still says which capabilities are missing (crank run reports them)
        return replace(record, status="failed", error=error, manifest_path=_manifest_of(ep.value))
    return replace(record, hooks=hook_names(plugin, pm), manifest_path=_manifest_next_to(plugin))


def _is_blocked_distribution(name: str, blocked: frozenset[str]) -> bool:
    """Distribution names compare as pip compares them: ``Crank_Plugin.X`` is ``crank-plugin-x``."""

    def normalize(text: str) -> str:
        return re.sub(r"[-_.]+", "-", text).lower()

    return normalize(name) in {normalize(b) for b in blocked}


def _dist_name(ep: metadata.EntryPoint) -> str | None:
    dist = getattr(ep, "dist", None)
    return dist.metadata["Name"] if dist is not None else None


def _name_taken(ep: metadata.EntryPoint, first: metadata.EntryPoint) -> PluginRecord:
    dist = getattr(ep, "dist", None)
    error = (
        f"plugin name {ep.name!r} is taken by {_dist_name(first) or first.value!r} "
        f"({first.value}), so {ep.value} was not loaded; uninstall one, or block one by its "
        f"distribution name with {DISABLE_ENV}"
    )
    _warn_failed(ep.name, ep.value, error)
    return PluginRecord(
        name=ep.name,
        status="failed",
        module=ep.value,
        distribution=_dist_name(ep),
        version=dist.metadata["Version"] if dist is not None else None,
        error=error,
    )


def _manifest_of(target: str) -> Path | None:
    """The crank.yaml beside a module found without running it (for a plugin that failed)."""
    try:
        spec = importlib.util.find_spec(target.partition(":")[0])
    except (Exception, SystemExit):  # finding a submodule imports its package, which may fail
        return None
    if spec is None or spec.origin is None:
        return None
    candidate = Path(spec.origin).parent / MANIFEST_NAME
    return candidate if candidate.is_file() else None


def _warn_failed(name: str, target: str, error: str) -> None:
    warnings.warn(
        f"crank plugin {name!r} ({target}) failed to load and was skipped: {error}",
        PluginLoadWarning,
        stacklevel=4,
    )


@functools.cache
def _crank_version() -> str:
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:  # running from a source tree
        return "0+unknown"


_lock = threading.Lock()
_manager: CrankPluginManager | None = None


def get_plugin_manager() -> CrankPluginManager:
    """The process-wide manager, built on first use (plugins load once)."""
    global _manager
    with _lock:
        if _manager is None:
            _manager = build_plugin_manager()
        return _manager


def reset_plugin_manager() -> None:
    """Forget the process-wide manager (tests that change installed plugins)."""
    global _manager
    with _lock:
        _manager = None
