"""The plugin manager: entry-point discovery, failure isolation, blocked names.

Plugins are loaded once per process, behind :func:`get_plugin_manager`. A plugin
whose import raises is recorded with its error (shown by ``crank plugins`` and
warned about once) and never takes crank down. ``CRANK_DISABLE_PLUGINS=a,b``
stops the named plugins before they are imported.
"""

from __future__ import annotations

import functools
import importlib
import os
import threading
import warnings
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pluggy

from crank import DISTRIBUTION, hookspecs

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from crank.manifest import Manifest

ENTRY_POINT_GROUP = "crank"
DISABLE_ENV = "CRANK_DISABLE_PLUGINS"
MANIFEST_NAME = "crank.yaml"

#: crank's own plugins: every built-in command and rule is registered the way a
#: third party would register one.
BUILTIN_PLUGINS: tuple[str, ...] = (
    "crank.cli.builtin",
    "crank.manifest.rules",
    "crank.testing.builtin_checkers",
    "crank.generate.builtin",
)

PluginStatus = Literal["loaded", "failed", "blocked"]


class PluginLoadWarning(UserWarning):
    """A plugin failed to import; crank goes on without it."""


@dataclass(frozen=True)
class PluginRecord:
    """What crank knows about one plugin, whatever became of it."""

    name: str
    status: PluginStatus
    module: str
    distribution: str | None = None
    version: str | None = None
    hooks: tuple[str, ...] = ()
    manifest_path: Path | None = None
    error: str | None = None
    builtin: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "module": self.module,
            "distribution": self.distribution,
            "version": self.version,
            "hooks": list(self.hooks),
            "manifest": str(self.manifest_path) if self.manifest_path else None,
            "error": self.error,
            "builtin": self.builtin,
        }


@dataclass
class CrankPluginManager:
    """pluggy's manager plus the record of every plugin crank tried to load."""

    pm: pluggy.PluginManager
    records: list[PluginRecord] = field(default_factory=list)

    @property
    def hook(self) -> Any:
        return self.pm.hook

    def loaded(self) -> list[PluginRecord]:
        return [r for r in self.records if r.status == "loaded"]

    def failed(self) -> list[PluginRecord]:
        return [r for r in self.records if r.status == "failed"]

    def manifest_paths(self) -> list[Path]:
        """Manifests of every loaded plugin, plus those registered through the hook."""
        paths = [r.manifest_path for r in self.loaded() if r.manifest_path is not None]
        registered: list[Path] = []
        self.call_each("crank_register_workers", register=lambda p: registered.append(Path(p)))
        for p in registered:
            if p not in paths:
                paths.append(p)
        return paths

    def worker_manifests(self) -> Iterator[tuple[Path, Manifest]]:
        """``(path, manifest)`` of every installed worker, each loaded when reached."""
        from crank.manifest import load_manifest

        for path in self.manifest_paths():
            yield path, load_manifest(path)

    def find_worker(self, name: str) -> tuple[Path, Manifest] | None:
        """The installed worker whose ``metadata.name`` is ``name``, or None."""
        return next(((p, m) for p, m in self.worker_manifests() if m.name == name), None)

    def worker_names(self) -> list[str]:
        """Sorted names of the installed workers (for hints that list them)."""
        return sorted(m.name for _, m in self.worker_manifests())

    def call_each(self, hook_name: str, **kwargs: Any) -> None:
        """Call every implementation of a gathering hook, each on its own.

        A plugin whose implementation raises is named in a :class:`PluginLoadWarning`
        and skipped; the other plugins' contributions are kept. A
        :class:`~crank.errors.CrankError` (a plugin registered something invalid)
        is raised as it is, since it already names the problem.
        """
        from crank.errors import CrankError

        caller = getattr(self.hook, hook_name)
        for impl in caller.get_hookimpls():  # registration order: crank's own come first
            try:
                impl.function(*(kwargs[name] for name in impl.argnames))
            except CrankError:
                raise
            except Exception as exc:  # one broken plugin must not hide the others
                warnings.warn(
                    f"crank plugin {impl.plugin_name!r} failed in {hook_name} and was "
                    f"skipped: {type(exc).__name__}: {exc}",
                    PluginLoadWarning,
                    stacklevel=2,
                )

    def register(self, plugin: object, name: str | None = None) -> None:
        """Register an in-process plugin (tests and embedding applications)."""
        self.pm.register(plugin, name=name)

    def unregister(self, name: str) -> None:
        self.pm.unregister(name=name)


def blocked_names(environ: dict[str, str] | None = None) -> frozenset[str]:
    raw = (environ if environ is not None else os.environ).get(DISABLE_ENV, "")
    return frozenset(n.strip() for n in raw.split(",") if n.strip())


def _hook_names(plugin: object) -> tuple[str, ...]:
    return tuple(
        sorted(n for n in dir(plugin) if n.startswith("crank_") and callable(getattr(plugin, n)))
    )


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
            if modname in blocked:
                manager.records.append(
                    PluginRecord(
                        name=modname,
                        status="blocked",
                        module=modname,
                        distribution=DISTRIBUTION,
                        version=_crank_version(),
                        error=f"blocked by {DISABLE_ENV}",
                        builtin=True,
                    )
                )
                continue
            try:
                module = importlib.import_module(modname)
                pm.register(module, name=modname)
            except Exception as exc:  # a broken built-in must not take the others down
                error = f"{type(exc).__name__}: {exc}"
                manager.records.append(
                    PluginRecord(
                        name=modname,
                        status="failed",
                        module=modname,
                        distribution=DISTRIBUTION,
                        version=_crank_version(),
                        error=error,
                        builtin=True,
                    )
                )
                _warn_failed(modname, modname, error)
                continue
            manager.records.append(
                PluginRecord(
                    name=modname,
                    status="loaded",
                    module=modname,
                    distribution=DISTRIBUTION,
                    version=_crank_version(),
                    hooks=_hook_names(module),
                    builtin=True,
                )
            )

    seen: set[str] = set()
    for ep in sorted(_entry_points(), key=lambda e: e.name):
        if ep.name in seen:
            continue
        seen.add(ep.name)
        dist = getattr(ep, "dist", None)
        # one metadata parse per plugin (each .metadata access re-reads the file)
        dist_meta = dist.metadata if dist is not None else None
        dist_name = dist_meta["Name"] if dist_meta is not None else None
        dist_version = dist_meta["Version"] if dist_meta is not None else None
        if ep.name in blocked or (dist_name is not None and dist_name in blocked):
            manager.records.append(
                PluginRecord(
                    name=ep.name,
                    status="blocked",
                    module=ep.value,
                    distribution=dist_name,
                    version=dist_version,
                    error=f"blocked by {DISABLE_ENV}",
                )
            )
            continue
        try:
            plugin = ep.load()
            pm.register(plugin, name=ep.name)
        except Exception as exc:  # isolation is the point: any failure is reported
            error = f"{type(exc).__name__}: {exc}"
            manager.records.append(
                PluginRecord(
                    name=ep.name,
                    status="failed",
                    module=ep.value,
                    distribution=dist_name,
                    version=dist_version,
                    error=error,
                )
            )
            _warn_failed(ep.name, ep.value, error)
            continue
        manager.records.append(
            PluginRecord(
                name=ep.name,
                status="loaded",
                module=ep.value,
                distribution=dist_name,
                version=dist_version,
                hooks=_hook_names(plugin),
                manifest_path=_manifest_next_to(plugin),
            )
        )
    return manager


def _warn_failed(name: str, target: str, error: str) -> None:
    warnings.warn(
        f"crank plugin {name!r} ({target}) failed to load and was skipped: {error}",
        PluginLoadWarning,
        stacklevel=3,
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
