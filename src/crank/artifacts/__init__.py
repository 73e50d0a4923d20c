"""Artifacts with standard YAML front-matter, addressed by content and provenance.

``FilesystemArtifactStore(root)`` is the default backend. An S3-compatible
backend is not part of crank yet; :class:`ArtifactStore` is the Protocol one
would implement.
"""

from __future__ import annotations

from crank.artifacts.errors import (
    ArtifactConflict,
    ArtifactCorrupted,
    ArtifactError,
    ArtifactMetadataInvalid,
    ArtifactNotFound,
)
from crank.artifacts.metadata import (
    build_metadata,
    metadata_errors,
    metadata_schema,
    utc_now,
    validate_metadata,
)
from crank.artifacts.store import (
    Artifact,
    ArtifactRef,
    ArtifactStore,
    FilesystemArtifactStore,
    Verification,
    artifact_id_for,
)

__all__ = [
    "Artifact",
    "ArtifactConflict",
    "ArtifactCorrupted",
    "ArtifactError",
    "ArtifactMetadataInvalid",
    "ArtifactNotFound",
    "ArtifactRef",
    "ArtifactStore",
    "FilesystemArtifactStore",
    "Verification",
    "artifact_id_for",
    "build_metadata",
    "metadata_errors",
    "metadata_schema",
    "utc_now",
    "validate_metadata",
]
