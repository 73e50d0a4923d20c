"""pluggy markers and every ``crank_*`` hook specification.

Hooks are grouped by the stage of crank's life in which they are called.
Gathering hooks take a ``register`` callback instead of returning lists, so a
plugin can register any number of things and crank can check each one as it
arrives. Every kind of contribution follows the same rules (see
:class:`crank.plugins.Registry`): each plugin's implementation is called on its
own, one that raises or registers something unusable is skipped and reported by
name (``crank plugins``), a value returned instead of registered is reported and
ignored, and a name registered twice keeps its first registration. An
implementation named like no hook here is reported and never called. crank's own
implementations are marked ``tryfirst``.

Plugin authors import the types named here from :mod:`crank.plugin`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from crank.plugin import (
        RegisterCommand,
        RegisterDependencyChecker,
        RegisterLintRule,
        RegisterRenderer,
        RegisterWorker,
        RuntimeConfig,
    )

PROJECT_NAME = "crank"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


# --- command line -------------------------------------------------------------


@hookspec
def crank_register_commands(register: RegisterCommand) -> None:
    """Called once per process when the ``crank`` command line is built (every
    ``crank`` invocation, ``crank --help`` included), and by ``crank plugins``.

    :param register: call with a :class:`click.Command`, or a
        :class:`crank.plugin.LazyCommand` (a name, ``"module:attribute"`` and a
        one-line help) so that ``crank --help`` lists the command without importing
        it. The command's name becomes a ``crank`` subcommand; a name already taken
        is reported and the first registration kept.
    :return: nothing; everything goes through ``register``.

    .. versionadded:: 0.1
    """


# --- manifests ----------------------------------------------------------------


@hookspec
def crank_register_lint_rules(register: RegisterLintRule) -> None:
    """Called when rules are gathered for ``crank lint`` (once per run) and by
    ``crank plugins``.

    :param register: call with a :class:`crank.plugin.LintRule`: an object with a
        stable ``id`` (``CRK`` + three digits for crank's own; plugins use their own
        prefix, e.g. ``ACME001``: a plugin's ``CRK`` id is skipped and reported, as is an
        id another rule has), a one-line ``summary`` and ``check(ctx)``, which
        receives a :class:`crank.plugin.LintContext` and returns an iterable of
        :class:`crank.plugin.Finding` (``ctx.finding(...)`` builds one at a node).
        :class:`crank.plugin.FunctionRule` makes a rule of a function. A rule that
        raises while checking becomes an error finding naming it; manifests turn
        rules off with ``# crank-lint: disable=ID``.
    :return: nothing; everything goes through ``register``.

    .. versionadded:: 0.1
    """


@hookspec
def crank_register_workers(register: RegisterWorker) -> None:
    """Called whenever crank collects the installed workers (``crank run``,
    ``crank routes``, ``crank lint``'s cross-worker rules...).

    A worker package whose entry-point module sits next to a ``crank.yaml`` is
    found without this hook; use it to register manifests kept elsewhere.

    :param register: call with the :class:`pathlib.Path` (or ``str``) of a
        ``crank.yaml``; a path that is not a file is reported and skipped.
    :return: nothing; everything goes through ``register``.

    .. versionadded:: 0.1
    """


# --- dependencies and testing -------------------------------------------------


@hookspec
def crank_register_dependency_checkers(register: RegisterDependencyChecker) -> None:
    """Called once per process, before the first dependency spec is checked
    (``ensure_dependency``, ``@pytest.mark.requires``, ``crank test-worker``).

    :param register: call as ``register(kind, checker)``. ``kind`` is a lower-case
        word, the spec prefix it answers (``libreoffice`` answers ``libreoffice``
        and ``libreoffice:calc``; ``http`` also answers ``http://...`` URLs).
        ``checker`` is a :class:`crank.plugin.DependencyChecker`: called with a
        :class:`crank.plugin.DependencySpec`, it returns a
        :class:`crank.plugin.DependencyResult` (``.found``, ``.missing`` or
        ``.failing``). A checker that raises makes the dependency *broken*, with
        the kind and the checker named; one that raises :class:`crank.errors.UsageError`
        says the spec itself is written wrong (a URL with no port), which its test
        reports as the author's mistake.
    :return: nothing; everything goes through ``register``.

    .. versionadded:: 0.1
    """


# --- deployment artifacts -----------------------------------------------------


@hookspec
def crank_register_renderers(register: RegisterRenderer) -> None:
    """Called when artifacts are rendered or checked for drift (``crank render``,
    ``crank check``, ``crank new-worker``) and by ``crank plugins``.

    :param register: call with a :class:`crank.plugin.ArtifactRenderer`: a
        ``name`` (a ``crank render NAME`` choice), a one-line ``description`` and
        ``render(project)``, which receives a :class:`crank.plugin.WorkerProject`
        and returns a tuple of :class:`crank.plugin.RenderedFile` (none when the
        artifact does not apply to that project). Its files are covered by
        ``crank check``; a renderer that raises is reported by name and the other
        artifacts are still rendered and checked.
    :return: nothing; everything goes through ``register``.

    .. versionadded:: 0.1
    """


# --- runtime ------------------------------------------------------------------


@hookspec
def crank_runtime_started(config: RuntimeConfig) -> None:
    """Called once in the ``crank run`` supervisor process, after the HTTP server
    and the worker pool are up.

    :param config: the :class:`crank.plugin.RuntimeConfig` in force (frozen: a
        plugin reads it, it cannot change it).
    :return: nothing. An exception is logged naming the plugin; it stops neither the
        server nor the other plugins' implementations.

    .. versionadded:: 0.1
    """


@hookspec
def crank_task_finished(capability: str, status: str, duration_s: float) -> None:
    """Called in a worker process after each task attempt ends (keep it quick: it
    runs on the task path).

    :param capability: the capability id that ran.
    :param status: ``succeeded``, ``failed``, ``retrying`` or ``dead``.
    :param duration_s: wall time of the attempt, in seconds.
    :return: nothing. An exception is logged naming the plugin; the task's outcome
        stands and the other plugins' implementations are still called.

    .. versionadded:: 0.1
    """
