"""The errors crank raises on purpose, and the exit codes of the ``crank`` command.

Each error carries a user-facing ``message`` (what is wrong, naming the offending
object) and a ``hint`` (how to fix it). Only :mod:`crank.cli` turns them into exit
codes and friendly text; library code raises and lets callers decide.

This module holds the errors shared across crank's layers. An error that belongs
to one public API lives with that API, still a :class:`CrankError`, so
``except CrankError`` catches everything crank raises on purpose
(:data:`ERROR_HOMES` lists them; a test keeps the list true):

* ``crank.worker``: errors of the worker API (``CapabilityError`` and the
  per-code declared errors, ``UnknownErrorCode``, ``TaskCancelled``,
  ``OutputInvalid``), importable from :mod:`crank.worker`;
* ``crank.artifacts.errors``: the artifact store's;
* ``crank.client.errors``: the Python client's;
* ``crank.runtime``: what a ``crank run`` process answers over HTTP (a full queue,
  a paused capability, a body too large) and ``ServeError`` (the server cannot
  start); they never leave that process as exceptions.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping


class ExitCode(enum.IntEnum):
    """Process exit codes of the ``crank`` command (docs/cli.md lists them).

    A command returns one of them; a :class:`CrankError` carries its own. Only
    :mod:`crank.cli` turns either into the exit status.
    """

    OK = 0
    FINDINGS = 1
    USAGE = 2
    UNAVAILABLE = 3
    FAILED = 4
    INTERRUPTED = 130

    @property
    def meaning(self) -> str:
        return _EXIT_MEANINGS[self]


_EXIT_MEANINGS: dict[ExitCode, str] = {
    ExitCode.OK: "success: the command did its job and found nothing wrong",
    ExitCode.FINDINGS: "the command ran and found problems: lint findings, drifted artifacts, "
    "breaking changes, failed self-tests, a critical health report",
    ExitCode.USAGE: "the command line or its input cannot be used: a bad option, a missing "
    "or unreadable file, an invalid manifest (`crank lint` reports it as findings), an "
    "unknown worker or capability",
    ExitCode.UNAVAILABLE: "something crank needs is missing or unreachable: Docker, Redis, "
    "a running crank, a tool",
    ExitCode.FAILED: "a worker, a task or a build failed",
    ExitCode.INTERRUPTED: "interrupted by the user (Ctrl-C); not `crank run`, which Ctrl-C "
    "and SIGTERM stop the planned way: 0 after a clean stop",
}


class CrankError(Exception):
    """Base of every deliberate crank error."""

    exit_code: ExitCode = ExitCode.FAILED

    def __init__(self, message: str, *, hint: str | None = None, subject: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        #: The offending object (a path, a plugin name, a capability id...).
        self.subject = subject

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\n  hint: {self.hint}"
        return self.message


class UsageError(CrankError):
    """The command line or an argument cannot be used as given."""

    exit_code = ExitCode.USAGE


class ManifestError(CrankError):
    """A manifest cannot be read or does not match the schema.

    ``findings`` holds the positioned problems (``crank.manifest.Finding``) when
    the file could be parsed far enough to locate them. A command cannot use such a
    manifest (exit status 2); ``crank lint``, whose job is to find these problems,
    reports the findings instead (exit status 1).
    """

    exit_code = ExitCode.USAGE

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        subject: Any = None,
        findings: tuple[Any, ...] = (),
    ) -> None:
        super().__init__(message, hint=hint, subject=subject)
        self.findings = findings


class PluginError(CrankError):
    """A plugin could not be loaded or misbehaves."""


class WorkerError(CrankError):
    """A worker does not match its manifest or cannot be instantiated."""


class CapabilityNotFound(CrankError):
    """No installed worker serves the requested capability id."""

    exit_code = ExitCode.USAGE


class CapabilityGone(CrankError):
    """A deprecated capability was called after its sunset date.

    ``headers`` are the ``Sunset`` (RFC 8594) and ``Link: <...>; rel="successor-version"``
    headers the refusal answers with, so a client reads when the id retired and where
    it went as it read them before the sunset.
    """

    def __init__(
        self,
        message: str,
        *,
        successors: tuple[str, ...] = (),
        headers: Mapping[str, str] | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(message, **kw)
        self.successors = successors
        self.headers = dict(headers or {})


class ValidationFailed(CrankError):
    """Input or output of a capability does not match its JSON Schema.

    ``errors`` is a list of ``{"path": "$.field", "message": "..."}`` dicts.
    """

    exit_code = ExitCode.USAGE

    def __init__(
        self, message: str, *, errors: list[dict[str, str]] | None = None, **kw: Any
    ) -> None:
        super().__init__(message, **kw)
        self.errors = errors or []


class DependencyMissing(CrankError):
    """A declared dependency (module, executable, service, GPU) is not available."""

    exit_code = ExitCode.UNAVAILABLE


class DependencyBroken(CrankError):
    """A dependency is installed but fails when used (it is not merely missing)."""

    exit_code = ExitCode.UNAVAILABLE


class BrokerError(CrankError):
    """The task broker is unreachable or rejected an operation."""

    exit_code = ExitCode.UNAVAILABLE


class NothingListening(CrankError):
    """No crank server answers at a URL (``crank status``)."""

    exit_code = ExitCode.UNAVAILABLE


class NothingToDo(CrankError):
    """A task is not in a state the action applies to (it had ended; it is no dead
    letter): nothing changed (``crank tasks cancel|redrive``)."""

    exit_code = ExitCode.FINDINGS


class DockerUnavailable(CrankError):
    """No Docker engine answers."""

    exit_code = ExitCode.UNAVAILABLE


class GenerateError(CrankError):
    """Scaffolding or rendering an artifact failed (bad name, target exists...)."""

    exit_code = ExitCode.USAGE


class BuildFailed(CrankError):
    """A container image build step failed (the build log says which)."""

    def __init__(self, message: str, *, log: tuple[str, ...] = (), **kw: Any) -> None:
        super().__init__(message, **kw)
        #: The last lines the build printed before it failed.
        self.log = log


class DockerConnectionLost(BuildFailed):
    """The Docker engine's connection broke during a build (it stopped or restarted):
    the engine is unavailable, the build itself did not fail (exit status 3, not 4)."""

    exit_code = ExitCode.UNAVAILABLE


#: Where CrankError subclasses may live besides this module (packages end in ".").
ERROR_HOMES: tuple[str, ...] = (
    "crank.worker.",
    "crank.artifacts.errors",
    "crank.client.errors",
    "crank.runtime.",
)


__all__ = [
    "ERROR_HOMES",
    "BrokerError",
    "BuildFailed",
    "CapabilityGone",
    "CapabilityNotFound",
    "CrankError",
    "DependencyBroken",
    "DependencyMissing",
    "DockerConnectionLost",
    "DockerUnavailable",
    "ExitCode",
    "GenerateError",
    "ManifestError",
    "NothingListening",
    "NothingToDo",
    "PluginError",
    "UsageError",
    "ValidationFailed",
    "WorkerError",
]
