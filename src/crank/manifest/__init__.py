"""Manifests: the versioned JSON Schema, a loader that keeps positions, lint rules."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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
    from crank.manifest.reading import load_manifest, manifest_from_document
    from crank.manifest.validate import manifest_schema, schema_findings

# Names resolve on first use so importing a submodule (crank.manifest.rules at
# start-up) does not pull in PyYAML and jsonschema.
_LAZY: dict[str, str] = {
    "Finding": "crank.manifest.findings",
    "LoadedDocument": "crank.manifest.loader",
    "load_document": "crank.manifest.loader",
    "load_manifest": "crank.manifest.reading",
    "manifest_from_document": "crank.manifest.reading",
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
