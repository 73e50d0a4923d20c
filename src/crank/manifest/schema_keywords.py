"""What a capability's input/output schema may say: the JSON Schema 2020-12 vocabulary.

A JSON Schema validator ignores a keyword it does not know, and YAML turns a
text cut by an unquoted ``,`` or ``:`` inside a ``{flow mapping}`` into extra
keys with null values, so a manifest can publish a schema that silently says
less than its author wrote (the doc-converter's ``description: ... (headers,
<html> wrapper).`` became a description cut short and a key ``<html>
wrapper).``). :func:`schema_problems` walks a schema the way a validator reads
it and reports every keyword that is not in the vocabulary (``x-`` extensions
aside) and every null where a value is due (``const`` and ``default`` may be
null; the members of ``enum`` and ``examples`` are data, not schemas).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from crank.manifest.findings import quoted

if TYPE_CHECKING:
    from collections.abc import Iterator

#: Keywords whose value is a schema.
SCHEMA_VALUED = frozenset(
    {
        "additionalProperties", "items", "not", "propertyNames", "contains", "if", "then",
        "else", "unevaluatedItems", "unevaluatedProperties", "contentSchema",
    }
)  # fmt: skip
#: Keywords whose value maps names to schemas.
SCHEMA_MAPS = frozenset(
    {"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"}
)
#: Keywords whose value is a list of schemas.
SCHEMA_LISTS = frozenset({"allOf", "anyOf", "oneOf", "prefixItems"})
#: Every other keyword of draft 2020-12 (core, applicator, validation, meta-data,
#: format and content vocabularies).
VALUE_KEYWORDS = frozenset(
    {
        "$schema", "$id", "$ref", "$anchor", "$dynamicRef", "$dynamicAnchor", "$vocabulary",
        "$comment", "type", "enum", "const", "multipleOf", "maximum", "exclusiveMaximum",
        "minimum", "exclusiveMinimum", "maxLength", "minLength", "pattern", "maxItems",
        "minItems", "uniqueItems", "maxContains", "minContains", "maxProperties",
        "minProperties", "required", "dependentRequired", "title", "description", "default",
        "deprecated", "readOnly", "writeOnly", "examples", "format", "contentEncoding",
        "contentMediaType",
    }
)  # fmt: skip
KEYWORDS = SCHEMA_VALUED | SCHEMA_MAPS | SCHEMA_LISTS | VALUE_KEYWORDS
#: Keywords that may hold null as their value.
NULLABLE = frozenset({"const", "default"})
#: Keywords of other dialects, with what draft 2020-12 says instead.
INSTEAD = {
    "nullable": "type: [<type>, 'null'] (nullable is OpenAPI 3.0, not JSON Schema)",
    "dependencies": "dependentRequired or dependentSchemas",
    "$recursiveRef": "$dynamicRef",
    "$recursiveAnchor": "$dynamicAnchor",
    "example": "examples: [<value>]",
}

Path = tuple[str | int, ...]


@dataclass(frozen=True)
class SchemaProblem:
    """One problem in a schema: where (relative to the schema) and what is wrong."""

    path: Path
    #: ``unknown-keyword`` (located at the key) or ``null-value`` (at the value).
    kind: str
    message: str
    hint: str


_CUT_HINT = (
    "quote the text: in a {flow mapping} an unquoted ',' or ': ' ends the value, and YAML "
    "reads the rest as extra keys"
)


def schema_problems(schema: Any, path: Path = ()) -> Iterator[SchemaProblem]:
    """Unknown keywords and misplaced nulls of ``schema`` and every subschema in it."""
    if not isinstance(schema, dict):
        return  # true/false are schemas; anything else is an invalid schema (CRK107)
    for key, value in schema.items():
        where = (*path, key)
        if not isinstance(key, str):
            continue  # the manifest schema refuses non-string keys
        if key not in KEYWORDS and not key.startswith("x-"):
            yield _unknown(where, key, value)
            continue
        if value is None and key not in NULLABLE:
            yield SchemaProblem(
                where,
                "null-value",
                f"{quoted(key)} has no value (null)",
                "give it a value, or remove it; if its text went on after a ',' or ': ', "
                + _CUT_HINT,
            )
            continue
        yield from _subschemas(key, value, where)


def _subschemas(key: str, value: Any, where: Path) -> Iterator[SchemaProblem]:
    if key in SCHEMA_VALUED:
        # draft 2019 allowed a list under items; CRK107 reports it, the walk still looks inside
        members = enumerate(value) if isinstance(value, list) else None
        if members is None:
            yield from schema_problems(value, where)
        else:
            for i, member in members:
                yield from _member(member, (*where, i))
    elif key in SCHEMA_MAPS and isinstance(value, dict):
        for name, member in value.items():
            yield from _member(member, (*where, name))
    elif key in SCHEMA_LISTS and isinstance(value, list):
        for i, member in enumerate(value):
            yield from _member(member, (*where, i))


def _member(member: Any, where: Path) -> Iterator[SchemaProblem]:
    if member is None:
        last = where[-1]
        what = f"{where[-2]}[{last}]" if isinstance(last, int) else f"the schema of {quoted(last)}"
        yield SchemaProblem(
            where,
            "null-value",
            f"{what} is null, not a schema",
            "write a schema (an object, or true/false); " + _CUT_HINT,
        )
    else:
        yield from schema_problems(member, where)


def _unknown(where: Path, key: str, value: Any) -> SchemaProblem:
    if key in INSTEAD:
        hint = f"JSON Schema 2020-12 says {INSTEAD[key]}"
    elif value is None:
        hint = _CUT_HINT
    else:
        hint = "use a JSON Schema 2020-12 keyword (a validator ignores any other), or name an "
        hint += "extension x-..."
    cut = " with no value: probably the tail of a text cut short" if value is None else ""
    return SchemaProblem(
        where, "unknown-keyword", f"{quoted(key)} is not a JSON Schema keyword{cut}", hint
    )


__all__ = ["KEYWORDS", "SchemaProblem", "schema_problems"]
