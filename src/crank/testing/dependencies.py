"""Checking dependency specs: results, checkers, the kind registry, the cache.

:func:`check_dependency` never skips or raises for a missing dependency; it
answers a :class:`DependencyResult`. :func:`crank.testing.ensure_dependency`
turns that answer into a pytest skip/failure or a crank error.

Checkers come from the ``crank_register_dependency_checkers`` hook: crank's own
(``module``, ``dist``, ``exe``, ``gpu``, ``nvidia-gpu``, ``onnxruntime``,
``redis``, ``tcp``) are registered by the built-in plugin
:mod:`crank.testing.builtin_checkers`, exactly as a third party adds a kind.
"""

from __future__ import annotations

import re
import threading
import warnings
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Protocol, cast

from crank.contributions import ContributionKind
from crank.errors import PluginError, UsageError
from crank.plugins import PluginLoadWarning, get_plugin_manager
from crank.testing.specs import DependencySpec, parse_spec, unmet_constraint, version_argv

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence


@dataclass(frozen=True)
class DependencyResult:
    """What checking one spec found.

    ``available`` and ``broken`` are never both true. A missing dependency has
    ``available=False, broken=False``; an installed one that fails when used has
    ``broken=True`` and the real exception (or the failing output) in ``error``.
    """

    spec: str
    kind: str
    name: str
    available: bool
    reason: str
    hint: str | None = None
    version: str | None = None
    error: BaseException | str | None = None
    broken: bool = False

    @classmethod
    def found(
        cls, spec: DependencySpec, *, version: str | None = None, reason: str = ""
    ) -> DependencyResult:
        return cls(
            spec=spec.raw,
            kind=spec.kind,
            name=spec.name,
            available=True,
            reason=reason or f"{spec.name} is available",
            version=version,
        )

    @classmethod
    def missing(
        cls,
        spec: DependencySpec,
        reason: str,
        *,
        hint: str | None = None,
        version: str | None = None,
    ) -> DependencyResult:
        return cls(
            spec=spec.raw,
            kind=spec.kind,
            name=spec.name,
            available=False,
            reason=reason,
            hint=hint,
            version=version,
        )

    @classmethod
    def failing(
        cls,
        spec: DependencySpec,
        reason: str,
        *,
        error: BaseException | str | None,
        hint: str | None = None,
        version: str | None = None,
    ) -> DependencyResult:
        return cls(
            spec=spec.raw,
            kind=spec.kind,
            name=spec.name,
            available=False,
            reason=reason,
            hint=hint,
            version=version,
            error=error,
            broken=True,
        )

    @property
    def missing_only(self) -> bool:
        """Absent (skip-worthy), as opposed to available or broken."""
        return not self.available and not self.broken


class DependencyChecker(Protocol):
    """Answers one parsed spec of the kind it was registered for.

    A checker returns :meth:`DependencyResult.found`, ``.missing`` or ``.failing``;
    an exception it raises is reported as a broken dependency naming the kind.
    """

    def __call__(self, spec: DependencySpec) -> DependencyResult: ...


_KIND_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")


def _accept_checker(kind: object, checker: object) -> tuple[str, DependencyChecker]:
    if not isinstance(kind, str) or not _KIND_NAME.match(kind):
        raise PluginError(
            f"dependency kind {kind!r} is not a valid kind name",
            hint="kinds are lower-case words like 'libreoffice' or 'nvidia-gpu'",
            subject=kind,
        )
    if not callable(checker):
        raise PluginError(
            f"dependency checker for kind {kind!r} is not callable: {checker!r}",
            hint="register a function taking a DependencySpec and returning a DependencyResult",
            subject=kind,
        )
    return kind, cast("DependencyChecker", checker)


#: Dependency checkers by kind, gathered through ``crank_register_dependency_checkers``.
DEPENDENCY_CHECKERS: ContributionKind[DependencyChecker] = ContributionKind(
    "crank_register_dependency_checkers",
    "dependency checker",
    _accept_checker,
    label="dependency kind",
)


class DependencyRegistry:
    """Kind -> checker, gathered once from the plugin hook."""

    def __init__(
        self,
        checkers: Mapping[str, DependencyChecker],
        failed_plugins: tuple[str, ...] = (),
        *,
        providers: Mapping[str, str] | None = None,
        skipped: tuple[str, ...] = (),
    ) -> None:
        self.checkers = dict(checkers)
        #: plugins that failed to load or were blocked: one may have provided a missing kind.
        self.failed_plugins = failed_plugins
        #: checker registrations that were skipped (the hook raised, a bad kind...).
        self.skipped = skipped
        #: kind -> the plugin that registered its checker (named when one raises).
        self.providers = dict(providers or {})

    @classmethod
    def from_plugins(cls) -> DependencyRegistry:
        with warnings.catch_warnings():
            # A broken third-party plugin (or checker registration) is recorded by the
            # manager and named when a spec asks for an unknown kind; under
            # filterwarnings=error its warning must not turn every dependency check
            # of a test suite into an error.
            warnings.filterwarnings("ignore", category=PluginLoadWarning)
            manager = get_plugin_manager()
            found = manager.collect(DEPENDENCY_CHECKERS)
        return cls(
            {kind: c.value for kind, c in found.items()},
            failed_plugins=tuple(
                f"{r.name} ({r.error})" for r in manager.records if r.status != "loaded"
            ),
            providers={kind: c.plugin for kind, c in found.items()},
            skipped=tuple(str(p) for p in manager.problems() if p.hook == DEPENDENCY_CHECKERS.hook),
        )

    def check(
        self, raw: str, *, version_command: tuple[str, ...] | None = None
    ) -> DependencyResult:
        try:
            spec = parse_spec(raw, self.checkers)
            if version_command is not None:
                check_version_command_applies(spec)
                spec = replace(spec, version_command=version_command)
        except UsageError as exc:
            if "unknown kind" in exc.message or "no checker for" in exc.message:
                if self.failed_plugins:
                    exc.hint = f"{exc.hint}; plugins not loaded: {', '.join(self.failed_plugins)}"
                if self.skipped:
                    exc.hint = f"{exc.hint}; skipped: {'; '.join(self.skipped)}"
            raise
        checker = self.checkers.get(spec.kind)
        if checker is None:  # the parser's default kind, 'module', whose plugin is missing
            hint = "crank's own kinds come from crank.testing.builtin_checkers"
            if self.failed_plugins:
                hint += f"; plugins not loaded: {', '.join(self.failed_plugins)}"
            raise UsageError(
                f"dependency spec {raw!r}: no checker for kind {spec.kind!r}",
                hint=hint,
                subject=raw,
            )
        plugin = self.providers.get(spec.kind)
        of = f" of plugin {plugin!r}" if plugin else ""
        try:
            result = checker(spec)
        except UsageError:
            raise  # the checker found the spec itself written wrong: the author's to fix
        # a checker bug must show, not pass as "missing"; sys.exit() in a checker (or in
        # a tool it wraps) is one too, while KeyboardInterrupt still stops the run
        except (Exception, SystemExit) as exc:
            return DependencyResult.failing(
                spec,
                f"the {spec.kind!r} dependency checker{of} ({_describe(checker)}) raised "
                f"{type(exc).__name__}: {exc}",
                error=exc,
            )
        if not isinstance(result, DependencyResult):
            # the same bug in another shape: it must not surface as an AttributeError
            # in whatever reads the result next
            return DependencyResult.failing(
                spec,
                f"the {spec.kind!r} dependency checker{of} ({_describe(checker)}) returned "
                f"{result!r}, not a DependencyResult",
                error=None,
                hint="a bug in the plugin: a checker returns DependencyResult.found(spec), "
                ".missing(spec, reason) or .failing(spec, reason, error=...)",
            )
        if result.available and spec.constraint is not None:
            # a plugin's checker may not look at the constraint: crank compares it with
            # the version the checker found, as its own checkers do
            unmet = unmet_constraint(spec.name, result.version, spec.constraint)
            if unmet is not None:
                return DependencyResult.missing(
                    spec, unmet, hint=result.hint, version=result.version
                )
        return result


def check_version_command_applies(spec: DependencySpec) -> None:
    """Only ``exe:`` checks run a version command: given to another kind, it would be
    silently ignored (and the version it names never compared)."""
    if spec.kind != "exe":
        raise UsageError(
            f"dependency spec {spec.raw!r}: a version command applies only to exe: specs, "
            f"not to a {spec.kind} spec",
            hint="drop the version command, or check the program: 'exe:NAME>=VERSION'"
            if spec.kind != "module"
            else f"a module's version is read from its metadata: drop the version command, "
            f"or check the program: 'exe:{spec.name}'",
            subject=spec.raw,
        )


def _describe(obj: object) -> str:
    module = getattr(obj, "__module__", None) or type(obj).__module__
    name = getattr(obj, "__qualname__", None) or type(obj).__qualname__
    return f"{module}.{name}"


_lock = threading.RLock()
_registry: DependencyRegistry | None = None
_cache: dict[str, DependencyResult] = {}


def dependency_registry() -> DependencyRegistry:
    """The process-wide registry, gathered from the plugins on first use."""
    global _registry
    with _lock:
        if _registry is None:
            _registry = DependencyRegistry.from_plugins()
        return _registry


def check_dependency(
    spec: str, *, version_command: str | Sequence[str] | None = None
) -> DependencyResult:
    """Check ``spec`` once per process and answer what was found (cached).

    :param version_command: for ``exe:`` specs with a version constraint, the command
        that prints the program's version (``"java -version"``) when none of the usual
        flags does.

    Raises :class:`~crank.errors.UsageError` only for a spec that cannot be
    parsed (an unknown kind, a bad version constraint): a typo must not skip.
    """
    if not isinstance(spec, str):
        raise UsageError(
            f"a dependency spec is a string, got {spec!r}",
            hint="name a module ('numpy>=1.26'), 'exe:NAME', 'gpu' or a URL",
            subject=str(spec),
        )
    argv = version_argv(version_command)
    key = spec.strip() if argv is None else f"{spec.strip()} [{' '.join(argv)}]"
    with _lock:
        cached = _cache.get(key)
    if cached is not None:
        return cached
    result = dependency_registry().check(spec.strip(), version_command=argv)
    with _lock:
        return _cache.setdefault(key, result)


def clear_dependency_cache() -> None:
    """Forget every result and the registry (after registering a checker plugin)."""
    global _registry
    with _lock:
        _cache.clear()
        _registry = None


def cached_results() -> dict[str, DependencyResult]:
    """A copy of what this process has checked so far, by spec."""
    with _lock:
        return dict(_cache)


__all__ = [
    "DEPENDENCY_CHECKERS",
    "DependencyChecker",
    "DependencyRegistry",
    "DependencyResult",
    "DependencySpec",
    "cached_results",
    "check_dependency",
    "clear_dependency_cache",
    "dependency_registry",
]
