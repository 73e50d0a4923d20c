"""Reading a manifest: load the YAML, validate it against the schema, build the model."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from crank.errors import ManifestError
from crank.manifest.loader import load_document
from crank.manifest.model import manifest_from_dict
from crank.manifest.schema_refs import unresolved_ref_findings
from crank.manifest.validate import schema_findings

if TYPE_CHECKING:
    from crank.manifest.loader import LoadedDocument
    from crank.manifest.model import Manifest


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
    findings = [f for f in schema_findings(doc) if f.severity == "error"]
    # a schema whose $ref does not resolve fails every validation: refuse it here, once
    findings = findings or unresolved_ref_findings(doc)
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
    return manifest_from_document(load_document(path), path)


__all__ = ["load_manifest", "manifest_from_document"]
