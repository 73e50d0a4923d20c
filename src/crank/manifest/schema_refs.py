"""References (``$ref``) of a capability's schema that it cannot resolve by itself.

A capability's input and output schemas are validated alone: nothing is read from
another file, so a ``$ref`` to one (or to a ``$defs`` entry that is not there) makes
every validation fail. ``crank lint`` reports them (CRK107), and loading a manifest
refuses them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from crank.manifest.findings import Finding, quoted

if TYPE_CHECKING:
    from collections.abc import Iterator

    from crank.manifest.loader import LoadedDocument

JsonPath = tuple[str | int, ...]


#: keywords whose values are data, not schemas: a "$ref" in them is no reference
_DATA_KEYWORDS = frozenset({"const", "enum", "default", "examples"})


def _refs(node: Any, path: JsonPath, base: str) -> Iterator[tuple[JsonPath, str, str]]:
    """(path, $ref, base URI it resolves against) of each reference in a schema."""
    if isinstance(node, dict):
        if isinstance(node.get("$id"), str):
            from urllib.parse import urljoin

            base = urljoin(base, node["$id"])
        if isinstance(node.get("$ref"), str):
            yield path, node["$ref"], base
        for key, value in node.items():
            if key not in _DATA_KEYWORDS:
                yield from _refs(value, (*path, key), base)
    elif isinstance(node, list):
        for index, item in enumerate(node):
            yield from _refs(item, (*path, index), base)


def unresolved_refs(schema: Any) -> list[tuple[JsonPath, str]]:
    """(path, $ref) of each ``$ref`` in a valid ``schema`` that it cannot resolve by
    itself: validating against one fails (nothing is fetched from a file or the web)."""
    found = list(_refs(schema, (), _SCHEMA_URI))
    if not found:
        return []
    from referencing import Registry
    from referencing.jsonschema import DRAFT202012

    try:
        registry: Registry[Any] = (
            Registry().with_resource(_SCHEMA_URI, DRAFT202012.create_resource(schema)).crawl()
        )
    except Exception:  # an $id or $anchor that is no text: the metaschema check says so
        return []
    bad: list[tuple[JsonPath, str]] = []
    for path, ref, base in found:
        try:
            registry.resolver(base_uri=base).lookup(ref)
        except Exception:  # Unresolvable, or a reference it cannot even read: both fail
            bad.append((path, ref))
    return bad


_SCHEMA_URI = "urn:crank:schema"


def unresolved_ref_problem(part: str, ref: str) -> tuple[str, str]:
    """The message and hint of a finding about ``ref`` in the ``part`` (input, output)
    schema, which it does not resolve."""
    where = (
        "points outside the schema (a file or URL); a capability's schema must be self-contained"
        if not ref.startswith("#")
        else "does not resolve within the schema"
    )
    return (
        f"{part} schema: $ref {quoted(ref)} {where}",
        "put the schema it names under `$defs` and refer to it as '#/$defs/<name>'",
    )


def unresolved_ref_findings(doc: LoadedDocument) -> list[Finding]:
    """A CRK107 finding at each ``$ref`` of a capability schema that does not resolve,
    in a document that passed the manifest schema."""
    found: list[Finding] = []
    for i, cap in enumerate(doc.data.get("capabilities") or ()):
        for part in ("input", "output"):
            for where, ref in unresolved_refs(cap.get(part)):
                path = ("capabilities", i, part, *where, "$ref")
                message, hint = unresolved_ref_problem(part, ref)
                line, col = doc.position(path)
                found.append(Finding(doc.file, line, col, REF_RULE, message, "error", path, hint))
    return found


REF_RULE = "CRK107"

__all__ = ["REF_RULE", "unresolved_ref_findings", "unresolved_ref_problem", "unresolved_refs"]
