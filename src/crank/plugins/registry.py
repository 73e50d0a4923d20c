"""One registry for every kind of plugin contribution, with one set of rules.

Whatever the kind (command, lint rule, renderer, dependency checker, worker):

* Each plugin's hook implementation is called on its own, through pluggy's own
  hook calling (a per-plugin :meth:`pluggy.PluginManager.subset_hook_caller`), in
  pluggy's order: tryfirst/trylast, then the last registered first. Wrappers and
  tracing apply as to any pluggy call. crank's own implementations are marked
  ``tryfirst``, so they come before a third party's.
* An implementation that raises is skipped; what it registered before raising
  is kept; the other plugins are unaffected.
* A registered object that the kind cannot use is skipped.
* A name registered twice: the first registration keeps it, the second is
  skipped. Registering the very same contribution again is not a conflict.
* A name under a prefix crank keeps for itself (``CRK`` of lint rule ids) is
  skipped unless one of crank's built-in plugins registers it.
* Each of these is recorded as a :class:`ContributionProblem` naming the
  plugin (``crank plugins`` lists them) and warned about once with a
  :class:`PluginLoadWarning`. Nothing a plugin registers can stop crank.
"""

from __future__ import annotations

import threading
import warnings
from typing import TYPE_CHECKING, Any, TypeVar

from crank.contributions import Contribution, ContributionKind, ContributionProblem
from crank.errors import CrankError

if TYPE_CHECKING:
    from collections.abc import Callable

    import pluggy

T = TypeVar("T")


class PluginLoadWarning(UserWarning):
    """A plugin failed to load, or one of its contributions could not be used."""


class Registry:
    """Gathers contributions through pluggy, isolating and recording each plugin's faults."""

    def __init__(
        self, pm: pluggy.PluginManager, *, builtin: Callable[[str], bool] = lambda _: False
    ) -> None:
        self._pm = pm
        #: Whether a plugin (by name) is one of crank's own.
        self._builtin = builtin
        self._lock = threading.Lock()
        #: The problems of the latest collection of each hook.
        self._problems: dict[str, tuple[ContributionProblem, ...]] = {}
        self._warned: set[ContributionProblem] = set()

    @property
    def problems(self) -> tuple[ContributionProblem, ...]:
        """Every problem the latest collection of each hook found."""
        with self._lock:
            return tuple(p for found in self._problems.values() for p in found)

    def problems_of(self, plugin: str) -> tuple[ContributionProblem, ...]:
        return tuple(p for p in self.problems if p.plugin == plugin)

    def forget(self, plugin: str) -> None:
        """Drop what is recorded about ``plugin`` (it was unregistered)."""
        with self._lock:
            for hook, found in self._problems.items():
                self._problems[hook] = tuple(p for p in found if p.plugin != plugin)
            self._warned = {p for p in self._warned if p.plugin != plugin}

    def check_hooks(self, plugin: str) -> None:
        """Report each ``crank_*`` implementation of ``plugin`` that names no crank hook.

        pluggy accepts an implementation of a hook it has no spec for and never calls
        it, so a misspelt ``crank_register_command`` would do nothing without a word.
        """
        module = self._pm.get_plugin(plugin)
        callers = self._pm.get_hookcallers(module) if module is not None else None
        known = [
            name
            for name in dir(self._pm.hook)
            if name.startswith("crank_") and getattr(self._pm.hook, name).spec is not None
        ]
        problems = [
            ContributionProblem(
                plugin=plugin,
                hook=caller.name,
                kind="unknown",
                message=f"implements {caller.name}, which is not a crank hook"
                f"{_did_you_mean(caller.name, known)}, so it is never called",
                hint="crank's hooks and their arguments are specified in crank.hookspecs",
            )
            for caller in callers or ()
            if caller.spec is None
        ]
        implemented = {caller.name for caller in callers or ()}
        problems.extend(
            ContributionProblem(
                plugin=plugin,
                hook=name,
                kind="unknown",
                message=f"defines {name} without @hookimpl, so it is never called",
                hint="decorate it with crank.plugin.hookimpl",
            )
            for name in known
            if name not in implemented and callable(getattr(module, name, None))
        )
        if problems:
            self._settle(f"{plugin} (hooks)", problems)

    def collect(self, kind: ContributionKind[T]) -> dict[str, Contribution[T]]:
        """Every usable contribution of ``kind`` by name, in the order pluggy called them."""
        found: dict[str, Contribution[T]] = {}
        problems: list[ContributionProblem] = []

        def register_for(plugin: str) -> dict[str, Any]:
            def register(*args: Any) -> None:
                self._accept(kind, plugin, args, found, problems)

            return {"register": register}

        self._call_each(kind.hook, register_for, problems)
        self._settle(kind.hook, problems)
        return found

    def _accept(
        self,
        kind: ContributionKind[T],
        plugin: str,
        args: tuple[Any, ...],
        found: dict[str, Contribution[T]],
        problems: list[ContributionProblem],
    ) -> None:
        try:
            name, value = kind.accept(*args)
        except CrankError as exc:
            problems.append(_unusable(kind, plugin, exc.message, exc.hint))
            return
        except Exception as exc:  # register called with the wrong arguments
            problems.append(_unusable(kind, plugin, f"{type(exc).__name__}: {exc}", None))
            return
        owner = kind.reserved.get(name)
        first = found.get(name)
        if owner is None and first is None:
            crank_s = bool(kind.crank_prefix) and name.startswith(kind.crank_prefix)
            if crank_s and not self._builtin(plugin):
                problems.append(_crank_prefix(kind, plugin, name))
                return
            found[name] = Contribution(name, value, plugin)
            return
        if first is not None and _same(first.value, value):
            return  # the same contribution twice takes nothing from anyone
        holder = owner or (first.plugin if first is not None else "?")
        problems.append(
            ContributionProblem(
                plugin=plugin,
                hook=kind.hook,
                kind="duplicate",
                message=f"registered {kind.name_label} {name!r}, which was skipped: "
                f"{kind.name_label} {name!r} is registered twice ({holder!r} registered it first)",
                hint="disable one of the two plugins with CRANK_DISABLE_PLUGINS",
            )
        )

    def callers(self, hook: str) -> list[tuple[str, Callable[..., Any]]]:
        """``(plugin name, caller)`` for each implementation of ``hook``, in pluggy's order.

        Each caller runs that one plugin's implementation through pluggy (wrappers and
        tracing apply), so whoever calls them can keep one plugin's exception from
        stopping the others: pluggy's own call stops at the first.
        """
        caller = getattr(self._pm.hook, hook)
        # pluggy calls the implementations last to first (tryfirst/trylast included)
        impls = [i for i in reversed(caller.get_hookimpls()) if not (i.wrapper or i.hookwrapper)]
        plugins = [i.plugin for i in impls]
        return [
            (
                impl.plugin_name,
                self._pm.subset_hook_caller(
                    hook, remove_plugins=[p for p in plugins if p is not impl.plugin]
                ),
            )
            for impl in impls
        ]

    def _call_each(
        self,
        hook: str,
        kwargs_for: Callable[[str], dict[str, Any]],
        problems: list[ContributionProblem],
    ) -> None:
        for plugin, one in self.callers(hook):
            try:
                returned = one(**kwargs_for(plugin))
            except (Exception, SystemExit) as exc:  # one broken plugin must not hide the others
                problems.append(
                    ContributionProblem(
                        plugin=plugin,
                        hook=hook,
                        kind="failed",
                        message=f"failed in {hook} and was skipped: {type(exc).__name__}: {exc}",
                        hint="a bug in the plugin: report it to its authors, or disable it "
                        "with CRANK_DISABLE_PLUGINS",
                    )
                )
                continue
            if returned:  # pluggy answers the implementation's result unless it was None
                # contributions returned instead of registered would be lost without a word
                problems.append(
                    ContributionProblem(
                        plugin=plugin,
                        hook=hook,
                        kind="unusable",
                        message=f"returned {_short(returned[0])} from {hook}, which was "
                        "ignored: the hook's return value is not read",
                        hint="call register(...) with each contribution, and return nothing",
                    )
                )

    def _settle(self, hook: str, problems: list[ContributionProblem]) -> None:
        with self._lock:
            self._problems[hook] = tuple(problems)
            new = [p for p in problems if p not in self._warned]
            self._warned.update(new)
        for problem in new:
            warnings.warn(str(problem), PluginLoadWarning, stacklevel=4)


def _unusable(
    kind: ContributionKind[Any], plugin: str, message: str, hint: str | None
) -> ContributionProblem:
    return ContributionProblem(
        plugin=plugin,
        hook=kind.hook,
        kind="unusable",
        message=f"registered an unusable {kind.noun}, which was skipped: {message}",
        hint=hint,
    )


def _crank_prefix(kind: ContributionKind[Any], plugin: str, name: str) -> ContributionProblem:
    prefix = kind.crank_prefix
    return _unusable(
        kind,
        plugin,
        f"{kind.name_label} {name!r} starts with {prefix}, which only crank's own {kind.noun}s use",
        f"name the plugin's {kind.noun}s under a prefix of its own",
    )


def _did_you_mean(name: str, known: list[str]) -> str:
    import difflib

    close = difflib.get_close_matches(name, known, n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _same(first: object, second: object) -> bool:
    if first is second:
        return True
    try:
        return bool(first == second)
    except Exception:  # an exotic __eq__ is not crank's business: not the same
        return False


__all__ = ["PluginLoadWarning", "Registry"]
