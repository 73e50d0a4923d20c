"""pluggy markers and every ``crank_*`` hook specification.

Hooks are grouped by the stage of crank's life in which they are called.
Gathering hooks take a ``register`` callback instead of returning lists, so a
plugin can register any number of things and crank can validate each one as it
arrives (and name the plugin that sent a bad one).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from collections.abc import Callable

PROJECT_NAME = "crank"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


# --- command line -------------------------------------------------------------


@hookspec
def crank_register_commands(register: Callable[[Any], None]) -> None:
    """Called once when the ``crank`` command line is built.

    :param register: call with a :class:`click.Command` to add it as a
        ``crank`` subcommand. A name already taken is reported, not overwritten.

    .. versionadded:: 0.1
    """


# --- manifests ----------------------------------------------------------------


@hookspec
def crank_register_lint_rules(register: Callable[[Any], None]) -> None:
    """Called once before the first manifest is linted.

    :param register: call with a :class:`crank.manifest.lint.LintRule`. Rule ids
        are stable (``CRK`` + three digits for crank's own; plugins use their own
        prefix) and can be disabled per file.

    .. versionadded:: 0.1
    """


@hookspec
def crank_register_workers(register: Callable[[Any], None]) -> None:
    """Called once when crank collects the installed workers.

    A worker package whose entry-point module sits next to a ``crank.yaml`` is
    found without this hook; use it to register manifests kept elsewhere.

    :param register: call with the :class:`pathlib.Path` of a ``crank.yaml``.

    .. versionadded:: 0.1
    """


# --- dependencies and testing -------------------------------------------------


@hookspec
def crank_register_dependency_checkers(register: Callable[[str, Any], None]) -> None:
    """Called once before the first dependency spec is checked.

    :param register: call as ``register(kind, checker)`` where ``kind`` is the
        spec prefix (``libreoffice`` answers ``libreoffice`` and ``libreoffice:...``)
        and ``checker`` is a :class:`crank.testing.dependencies.DependencyChecker`.

    .. versionadded:: 0.1
    """


# --- deployment artifacts -----------------------------------------------------


@hookspec
def crank_register_renderers(register: Callable[[Any], None]) -> None:
    """Called once before artifacts are rendered or checked for drift.

    :param register: call with a :class:`crank.generate.render.ArtifactRenderer`;
        its ``name`` becomes a ``crank render NAME`` choice and its output is
        covered by ``crank check``.

    .. versionadded:: 0.1
    """


# --- runtime ------------------------------------------------------------------


@hookspec
def crank_runtime_started(config: Any) -> None:
    """Called in the supervisor process after the HTTP server and pool are up.

    :param config: the :class:`crank.runtime.config.RuntimeConfig` in force.

    .. versionadded:: 0.1
    """


@hookspec
def crank_task_finished(capability: str, status: str, duration_s: float) -> None:
    """Called in a worker process after each task attempt ends.

    :param capability: the capability id that ran.
    :param status: ``succeeded``, ``failed``, ``retrying`` or ``dead``.
    :param duration_s: wall time of the attempt.

    .. versionadded:: 0.1
    """
