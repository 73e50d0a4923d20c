"""The plugin manager: pluggy's manager, the load record of each plugin, the registry."""

from __future__ import annotations

from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from crank.contributions import ContributionKind, ContributionProblem
from crank.errors import PluginError
from crank.plugins.registry import Registry

if TYPE_CHECKING:
    from collections.abc import Iterator

    import pluggy

    from crank.contributions import Contribution
    from crank.manifest import Manifest

T = TypeVar("T")

PluginStatus = Literal["loaded", "failed", "blocked"]


def _accept_worker(path: object) -> tuple[str, Path]:
    if not isinstance(path, str | PathLike):
        raise PluginError(
            f"crank_register_workers got {path!r}, not the path of a crank.yaml",
            hint="register a pathlib.Path (or str) of the worker's crank.yaml",
            subject=path,
        )
    manifest = Path(path)
    if not manifest.is_file():
        # kept, it would make every command that reads the installed workers fail,
        # naming a path but not the plugin behind it
        raise PluginError(
            f"crank_register_workers got {str(manifest)!r}, which is not a file",
            hint="register the absolute path of a crank.yaml that the plugin ships",
            subject=path,
        )
    return str(manifest), manifest


#: Manifests registered through ``crank_register_workers``.
WORKERS: ContributionKind[Path] = ContributionKind(
    "crank_register_workers", "worker manifest", _accept_worker
)


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
    """pluggy's manager, the record of every plugin crank tried to load, and the
    :class:`~crank.plugins.registry.Registry` that gathers their contributions."""

    pm: pluggy.PluginManager
    records: list[PluginRecord] = field(default_factory=list)
    registry: Registry = field(init=False)

    def __post_init__(self) -> None:
        self.registry = Registry(self.pm, builtin=self._is_builtin)

    def _is_builtin(self, plugin: str) -> bool:
        return any(r.builtin and r.name == plugin for r in self.records)

    @property
    def hook(self) -> Any:
        return self.pm.hook

    def loaded(self) -> list[PluginRecord]:
        return [r for r in self.records if r.status == "loaded"]

    def failed(self) -> list[PluginRecord]:
        return [r for r in self.records if r.status == "failed"]

    def idle(self) -> list[PluginRecord]:
        """Loaded plugins that add nothing: no hook and no crank.yaml beside their module.

        Most often a worker package installed without its manifest (not shipped as
        package data), which crank could otherwise only report as "no worker installed".
        """
        return [
            r for r in self.loaded() if not r.builtin and not r.hooks and r.manifest_path is None
        ]

    def collect(self, kind: ContributionKind[T]) -> dict[str, Contribution[T]]:
        """Every usable contribution of ``kind`` (see :class:`Registry`)."""
        return self.registry.collect(kind)

    def callers(self, hook: str) -> list[tuple[str, Any]]:
        """``(plugin, caller)`` per implementation of ``hook``, to call each one on its own."""
        return self.registry.callers(hook)

    def problems(self, plugin: str | None = None) -> tuple[ContributionProblem, ...]:
        """Contribution problems found so far, of one plugin or of all."""
        if plugin is None:
            return self.registry.problems
        return self.registry.problems_of(plugin)

    def manifest_paths(self) -> list[Path]:
        """Manifests of every loaded plugin, plus those registered through the hook."""
        paths = [r.manifest_path for r in self.loaded() if r.manifest_path is not None]
        for contribution in self.collect(WORKERS).values():
            if contribution.value not in paths:
                paths.append(contribution.value)
        return paths

    def worker_manifests(self) -> Iterator[tuple[Path, Manifest]]:
        """``(path, manifest)`` of every installed worker, each loaded when reached."""
        # lazy: reading a manifest imports PyYAML, and every crank command (crank --help
        # included) builds this manager
        from crank.manifest.reading import load_manifest

        for path in self.manifest_paths():
            yield path, load_manifest(path)

    def find_worker(self, name: str) -> tuple[Path, Manifest] | None:
        """The installed worker whose ``metadata.name`` is ``name``, or None."""
        return next(((p, m) for p, m in self.worker_manifests() if m.name == name), None)

    def worker_names(self) -> list[str]:
        """Sorted names of the installed workers (for hints that list them)."""
        return sorted(m.name for _, m in self.worker_manifests())

    def register(self, plugin: object, name: str | None = None) -> None:
        """Register an in-process plugin (tests and embedding applications)."""
        registered = self.pm.register(plugin, name=name)
        if registered is not None:
            module = getattr(plugin, "__name__", None) or type(plugin).__module__
            self.records.append(
                PluginRecord(registered, "loaded", str(module), hooks=hook_names(plugin, self.pm))
            )
            self.registry.check_hooks(registered)

    def unregister(self, name: str) -> None:
        self.pm.unregister(name=name)
        self.records = [r for r in self.records if r.name != name]
        self.registry.forget(name)


def hook_names(plugin: object, pm: pluggy.PluginManager | None = None) -> tuple[str, ...]:
    """The ``crank_*`` hooks a plugin implements.

    Given the manager it is registered with: only the crank hooks pluggy will call
    (not a helper that happens to start with ``crank_``, nor a misspelt hook).
    """
    if pm is not None:
        callers = pm.get_hookcallers(plugin) or ()
        return tuple(sorted(c.name for c in callers if c.spec is not None))
    return tuple(
        sorted(n for n in dir(plugin) if n.startswith("crank_") and callable(getattr(plugin, n)))
    )


__all__ = ["WORKERS", "CrankPluginManager", "PluginRecord", "PluginStatus", "hook_names"]
