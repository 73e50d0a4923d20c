"""Reading a manifest: load the YAML, validate it against the schema, build the model."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING

from crank.errors import ManifestError
from crank.manifest.findings import quoted
from crank.manifest.lint import LintContext
from crank.manifest.loader import load_document
from crank.manifest.model import manifest_from_dict
from crank.manifest.schema_refs import unresolved_ref_findings
from crank.manifest.validate import schema_findings

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

    from crank.manifest.findings import Finding
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
        raise _refusal(doc, findings, hint)
    return manifest_from_dict(doc.data, Path(path) if path is not None else None)


def _refusal(
    doc: LoadedDocument,
    findings: list[Finding],
    hint: str,
    about: str = "",
    consequence: str = "",
) -> ManifestError:
    first = findings[0]
    more = f" (and {len(findings) - 1} more)" if len(findings) > 1 else ""
    return ManifestError(
        f"{first.file}:{first.line}:{first.col} {first.rule} {about}{first.message}{more}"
        + consequence,
        hint=first.hint or hint,
        subject=doc.file,
        findings=tuple(findings),
    )


def _entry_named(doc: LoadedDocument, finding: Finding) -> str:
    """``capability 'x': `` for a finding inside a capability or a deprecated entry."""
    section, index = (*finding.path, None, None)[:2]
    label = {"capabilities": "capability", "deprecated": "deprecated capability"}.get(str(section))
    entries = doc.data.get(section) if isinstance(section, str) else None
    if label is None or not isinstance(index, int) or not isinstance(entries, list):
        return ""
    entry = entries[index] if index < len(entries) else None
    cid = entry.get("id") if isinstance(entry, dict) else None
    if not isinstance(cid, str) or quoted(cid) in finding.message:
        return ""  # the message names it already
    return f"{label} {quoted(cid)}: "


def _serving_refusal(doc: LoadedDocument, findings: list[Finding]) -> ManifestError:
    """The refusal to serve ``doc``: its first finding, naming the capability it is
    about. A shim's default or map value says itself which calls fail (those without
    the selector, or with the value); the others make every call fail."""
    first = findings[0]
    some = first.path[-2:] == ("shim", "default") or first.path[-3:-1] == ("shim", "map")
    return _refusal(
        doc,
        findings,
        "run `crank lint` on the file for every finding",
        _entry_named(doc, first),
        "" if some else "; every call of it would fail",
    )


def unservable_findings(doc: LoadedDocument) -> list[Finding]:
    """The ``crank lint`` errors, in a document that passed the manifest schema, that make
    every call of one of its capabilities fail at run time (a schema Python's ``re`` or
    jsonschema cannot use, deprecated ids that route in a loop, a split without a shim;
    a shim default that is not a key of its map fails the calls without the selector):
    the lint rules' own checks (:data:`crank.manifest.rules.SERVING_CHECKS`), so both say
    the same. A ``# crank-lint: disable=`` comment does not hide them: the calls fail
    all the same."""
    from crank.manifest.rules import SERVING_CHECKS

    ctx = LintContext(doc=doc, today=dt.date.today())
    return [f for check in SERVING_CHECKS for f in check(ctx) if f.severity == "error"]


def load_servable_manifest(path: Path | str) -> Manifest:
    """Load a manifest to serve: :func:`load_manifest`, and refuse one whose
    capabilities would fail every call (:func:`unservable_findings`) with a
    :class:`~crank.errors.ManifestError` naming the file, line, capability and fix."""
    doc = load_document(path)
    manifest = manifest_from_document(doc, path)
    findings = unservable_findings(doc)
    if findings:
        raise _serving_refusal(doc, findings)
    return manifest


def load_manifest(path: Path | str) -> Manifest:
    """Load and schema-validate one manifest.

    Raises :class:`~crank.errors.ManifestError` whose ``findings`` locate every problem.
    """
    return manifest_from_document(load_document(path), path)


def check_replacements(
    manifests: Sequence[Manifest], installed_paths: Callable[[], Iterable[Path]]
) -> None:
    """Refuse deprecated ids replaced by a capability that neither the ``manifests`` to
    serve nor any installed worker declare (CRK103): every call of them would fail; and
    shims mapping a selector value to such an id outside replaced_by (CRK104): every
    call with that value would fail.

    Nothing is read again unless a replacement is declared outside ``manifests``."""
    served = {c.id for m in manifests for c in m.capabilities} | {
        d.id for m in manifests for d in m.deprecated
    }
    targets = {
        t
        for m in manifests
        for d in m.deprecated
        for t in (*d.replaced_by, *(d.shim.map.values() if d.shim else ()))
    }
    if targets <= served:
        return
    from crank.manifest.rules import replaced_by_exists, shim_map_values_exist

    docs = [load_document(m.path) for m in manifests if m.path is not None]

    loaded: list[LoadedDocument] = []

    def elsewhere() -> list[LoadedDocument]:
        if not loaded:  # read once, for all the rules and files that ask
            known = {str(d.file) for d in docs}
            loaded.extend(load_document(p) for p in installed_paths() if str(p) not in known)
        return [*docs, *loaded]

    for doc in docs:
        ctx = LintContext(doc=doc, today=dt.date.today(), installed_source=elsewhere)
        found = [*replaced_by_exists(ctx), *shim_map_values_exist(ctx)]
        findings = [f for f in found if f.severity == "error"]
        if findings:
            raise _serving_refusal(doc, findings)


__all__ = [
    "check_replacements",
    "load_manifest",
    "load_servable_manifest",
    "manifest_from_document",
    "unservable_findings",
]
