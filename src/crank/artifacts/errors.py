"""Errors of the artifact store (all :class:`~crank.errors.CrankError`)."""

from __future__ import annotations

from typing import Any

from crank.errors import CrankError, ExitCode, ValidationFailed


class ArtifactError(CrankError):
    """Base of every artifact store error."""


class ArtifactNotFound(ArtifactError):
    """No artifact is stored under the requested id."""

    exit_code = ExitCode.USAGE


class ArtifactMetadataInvalid(ArtifactError, ValidationFailed):
    """Metadata does not match the artifact metadata schema.

    ``errors`` is a list of ``{"path": "$.field", "message": "..."}`` dicts, as for
    every :class:`~crank.errors.ValidationFailed`.
    """

    exit_code = ExitCode.USAGE


class ArtifactConflict(ArtifactError):
    """Different content already sits under the id being written; crank never overwrites it."""


class ArtifactCorrupted(ArtifactError):
    """A stored artifact no longer matches its recorded hashes (tampered or damaged)."""

    def __init__(self, message: str, *, problems: tuple[str, ...] = (), **kw: Any) -> None:
        super().__init__(message, **kw)
        self.problems = problems


__all__ = [
    "ArtifactConflict",
    "ArtifactCorrupted",
    "ArtifactError",
    "ArtifactMetadataInvalid",
    "ArtifactNotFound",
]
