"""Manifests: the versioned JSON Schema, a loader that keeps positions, lint rules."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

    from crank.manifest.findings import Finding
    from crank.manifest.loader import LoadedDocument, load_document
    from crank.manifest.model import (
        API_VERSION,
        Batching,
        Capability,
        Dependencies,
        Deprecation,
        ErrorCode,
        Example,
        Manifest,
        Metadata,
        Resources,
        Scaling,
        Shim,
        SystemDependency,
        WorkerSpec,
        manifest_from_dict,
    )
    from crank.manifest.validate import manifest_schema, schema_findings

# Names resolve on first use so importing a submodule (crank.manifest.rules at
# start-up) does not pull in PyYAML and jsonschema.
_LAZY: dict[str, str] = {
    "Finding": "crank.manifest.findings",
    "LoadedDocument": "crank.manifest.loader",
    "load_document": "crank.manifest.loader",
    "manifest_schema": "crank.manifest.validate",
    "schema_findings": "crank.manifest.validate",
    **{
        name: "crank.manifest.model"
        for name in (
            "API_VERSION",
            "Batching",
            "Capability",
            "Dependencies",
            "Deprecation",
            "ErrorCode",
            "Example",
            "Manifest",
            "Metadata",
            "Resources",
            "Scaling",
            "Shim",
            "SystemDependency",
            "WorkerSpec",
            "manifest_from_dict",
        )
    },
}


def __getattr__(name: str) -> Any:
    modname = _LAZY.get(name)
    if modname is None:
        raise AttributeError(f"module 'crank.manifest' has no attribute {name!r}")
    value = getattr(import_module(modname), name)
    globals()[name] = value
    return value


MANIFEST_GLOBS = ("crank.yaml", "*.crank.yaml")


def manifest_from_document(
    doc: LoadedDocument,
    path: Path | str | None = None,
    *,
    hint: str = "run `crank lint` on the file for every finding",
) -> Manifest:
    """Schema-validate a loaded document and build its :class:`Manifest`.

    Raises :class:`~crank.errors.ManifestError` naming the first error (and how many
    more), with every finding in ``findings``; ``hint`` is used when the first
    finding has none of its own.
    """
    from pathlib import Path

    from crank.errors import ManifestError
    from crank.manifest.model import manifest_from_dict
    from crank.manifest.validate import schema_findings

    findings = [f for f in schema_findings(doc) if f.severity == "error"]
    if findings:
        first = findings[0]
        more = f" (and {len(findings) - 1} more)" if len(findings) > 1 else ""
        raise ManifestError(
            f"{first.file}:{first.line}:{first.col} {first.rule} {first.message}{more}",
            hint=first.hint or hint,
            subject=doc.file,
            findings=tuple(findings),
        )
    return manifest_from_dict(doc.data, Path(path) if path is not None else None)


def load_manifest(path: Path | str) -> Manifest:
    """Load and schema-validate one manifest.

    Raises :class:`~crank.errors.ManifestError` whose ``findings`` locate every problem.
    """
    from crank.manifest.loader import load_document

    return manifest_from_document(load_document(path), path)


__all__ = [
    "API_VERSION",
    "MANIFEST_GLOBS",
    "Batching",
    "Capability",
    "Dependencies",
    "Deprecation",
    "ErrorCode",
    "Example",
    "Finding",
    "LoadedDocument",
    "Manifest",
    "Metadata",
    "Resources",
    "Scaling",
    "Shim",
    "SystemDependency",
    "WorkerSpec",
    "load_document",
    "load_manifest",
    "manifest_from_dict",
    "manifest_from_document",
    "manifest_schema",
    "schema_findings",
]
