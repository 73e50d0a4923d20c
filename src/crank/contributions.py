"""Kinds of plugin contributions, and what the registry records about them.

A *contribution* is one thing a plugin registers through a gathering hook
(``crank_register_*``): a command, a lint rule, an artifact renderer, a
dependency checker, a worker manifest. Each :class:`ContributionKind` says which
hook gathers it, how a contribution is named and what makes it usable; the
:class:`crank.plugins.Registry` applies the same rules to every kind.

This module sits at the bottom of crank's layers, beside :mod:`crank.errors`
and :mod:`crank.hookspecs`, so each kind is declared next to the protocol it
checks (lint rules in :mod:`crank.manifest.lint`, renderers in
:mod:`crank.generate.render`...) whatever that module's layer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Generic, Literal, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

T = TypeVar("T")

ProblemKind = Literal["failed", "unusable", "duplicate", "unknown"]


@dataclass(frozen=True)
class ContributionKind(Generic[T]):
    """One kind of contribution and the gathering hook that collects it.

    ``accept`` receives the arguments a plugin passed to ``register`` and returns
    ``(name, value)``; it raises :class:`~crank.errors.PluginError` (or any
    exception) when the contribution cannot be used. ``reserved`` maps names that
    crank keeps for itself to what holds them; ``crank_prefix`` starts every name
    only crank's built-in plugins may register.
    """

    hook: str
    #: What one contribution is called in messages ("lint rule").
    noun: str
    accept: Callable[..., tuple[str, T]]
    #: What precedes a name in messages ("lint rule id 'CRK101'"); the noun if empty.
    label: str = ""
    reserved: Mapping[str, str] = field(default_factory=dict)
    #: A prefix of names that only crank's own (built-in) plugins may register
    #: ("CRK" of lint rule ids): a third party's would pass for crank's.
    crank_prefix: str = ""

    @property
    def name_label(self) -> str:
        return self.label or self.noun


@dataclass(frozen=True)
class Contribution(Generic[T]):
    """One accepted contribution and the plugin that registered it."""

    name: str
    value: T
    plugin: str


@dataclass(frozen=True)
class ContributionProblem:
    """A plugin's contribution that crank could not use; the plugin's others still count.

    ``failed``: the hook implementation raised. ``unusable``: a registered object
    is not what the hook takes. ``duplicate``: the name was taken by an earlier
    registration, which is kept. ``unknown``: a ``crank_*`` hook implementation
    that matches no crank hook (a misspelt name), which is never called.
    """

    plugin: str
    hook: str
    kind: ProblemKind
    message: str
    hint: str | None = None

    def __str__(self) -> str:
        return f"crank plugin {self.plugin!r} {self.message}"

    def as_dict(self) -> dict[str, str | None]:
        return {"hook": self.hook, "kind": self.kind, "message": self.message, "hint": self.hint}


__all__ = ["Contribution", "ContributionKind", "ContributionProblem", "ProblemKind"]
