"""A fast yes-or-don't-know JSON Schema check that needs no jsonschema import.

Importing jsonschema costs about as much as everything else ``crank lint`` does,
and most manifests are valid. These functions answer ``True`` only when they are
certain jsonschema would agree (a document conforms; a schema is a valid draft
2020-12 schema); for anything they do not fully understand they answer ``None``
(or ``False``) and the caller asks jsonschema, which also words the errors.
A property test checks that "yes" is never wrong.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

#: Keywords that only annotate (or hold definitions): they never make a document invalid.
_ANNOTATIONS = frozenset(
    {
        "$schema",
        "$id",
        "$defs",
        "$comment",
        "title",
        "description",
        "default",
        "examples",
        "deprecated",
        "readOnly",
        "writeOnly",
    }
)
_TYPES = ("object", "array", "string", "integer", "number", "boolean", "null")
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$", re.ASCII)
_MAX_DEPTH = 64


def _is_type(instance: Any, kind: str) -> bool | None:
    if kind == "object":
        return isinstance(instance, dict)
    if kind == "array":
        return isinstance(instance, list)
    if kind == "string":
        return isinstance(instance, str)
    if kind == "boolean":
        return isinstance(instance, bool)
    if kind == "null":
        return instance is None
    if isinstance(instance, bool):
        return False
    if kind == "integer":
        if isinstance(instance, float):
            return None  # 1.0 counts as an integer for jsonschema: leave it to it
        return isinstance(instance, int)
    if kind == "number":
        return isinstance(instance, int | float)
    return None


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def conforms(instance: Any, schema: Any, root: Any = None, depth: int = 0) -> bool | None:
    """True if ``instance`` certainly conforms to ``schema``; None if not sure or not."""
    root = schema if root is None else root
    if depth > _MAX_DEPTH:
        return None
    if schema is True:
        return True
    if not isinstance(schema, dict):
        return None
    for key, value in schema.items():
        if key in _ANNOTATIONS:
            continue
        ok = _keyword(key, value, instance, schema, root, depth)
        if ok is not True:
            return None
    return True


def _keyword(
    key: str, value: Any, instance: Any, schema: dict[str, Any], root: Any, depth: int
) -> bool | None:
    if key == "$ref":
        if (
            not isinstance(value, str)
            or not value.startswith("#/$defs/")
            or not isinstance(root, dict)
        ):
            return None
        target = root.get("$defs", {}).get(value[len("#/$defs/") :])
        return None if target is None else conforms(instance, target, root, depth + 1)
    if key == "type":
        kinds = value if isinstance(value, list) else [value]
        if not kinds or not all(isinstance(k, str) and k in _TYPES for k in kinds):
            return None
        return True if any(_is_type(instance, k) for k in kinds) else None
    if key == "const":
        return True if _same(instance, value) else None
    if key == "enum":
        return True if isinstance(value, list) and any(_same(instance, v) for v in value) else None
    if key == "properties":
        if not isinstance(value, dict):
            return None
        if not isinstance(instance, dict):
            return True
        for name, sub in value.items():
            if name in instance and conforms(instance[name], sub, root, depth + 1) is not True:
                return None
        return True
    if key == "additionalProperties":
        if not isinstance(instance, dict):
            return True
        if "patternProperties" in schema:
            return None
        declared = schema.get("properties", {})
        if not isinstance(declared, dict):
            return None
        for name, item in instance.items():
            if name not in declared and conforms(item, value, root, depth + 1) is not True:
                return None
        return True
    if key == "required":
        if not isinstance(value, list):
            return None
        return True if not isinstance(instance, dict) or all(k in instance for k in value) else None
    if key == "items":
        if not isinstance(instance, list):
            return True
        if all(conforms(item, value, root, depth + 1) is True for item in instance):
            return True
        return None
    if key in ("minItems", "maxItems", "minProperties", "maxProperties", "minLength", "maxLength"):
        return _size(key, value, instance)
    if key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        if not _number(value):
            return None
        if not _number(instance):
            return True
        ok = {
            "minimum": instance >= value,
            "maximum": instance <= value,
            "exclusiveMinimum": instance > value,
            "exclusiveMaximum": instance < value,
        }[key]
        return True if ok else None
    if key == "pattern":
        if not isinstance(value, str):
            return None
        if not isinstance(instance, str):
            return True
        try:
            return True if re.search(value, instance) else None
        except re.error:
            return None
    if key == "format":
        if not isinstance(instance, str):
            return True
        if value == "date" and _DATE_RE.fullmatch(instance):
            try:
                dt.date.fromisoformat(instance)
            except ValueError:
                return None
            return True
        return None  # other formats depend on optional libraries jsonschema may use
    return None


def _size(key: str, value: Any, instance: Any) -> bool | None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        return None
    kind = {"Items": list, "Properties": dict, "Length": str}[key[3:]]
    if not isinstance(instance, kind):
        return True
    size = len(instance)
    return True if (size >= value if key.startswith("min") else size <= value) else None


def _same(a: Any, b: Any) -> bool:
    """Equality as JSON Schema means it (True is not 1)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, str) or isinstance(b, str) or a is None or b is None:
        return type(a) is type(b) and a == b
    return False  # numbers, lists, mappings: let jsonschema decide


# --- is a user's schema a valid draft 2020-12 schema? --------------------------------

_SCHEMA_KEYWORDS = frozenset({"properties", "items", "additionalProperties"})


def is_plain_valid_schema(schema: Any, depth: int = 0) -> bool:
    """True if ``schema`` uses only common keywords, each with a value the draft
    2020-12 metaschema accepts; False means "ask jsonschema", not "invalid"."""
    if depth > _MAX_DEPTH:
        return False
    if isinstance(schema, bool):
        return True
    if not isinstance(schema, dict):
        return False
    return all(_plain_keyword(k, v, depth) for k, v in schema.items())


def _plain_keyword(key: str, value: Any, depth: int) -> bool:
    if key in ("title", "description", "$comment", "format"):
        return isinstance(value, str)
    if key in ("default", "const"):
        return True
    if key == "examples":
        return isinstance(value, list)
    if key == "type":
        kinds = value if isinstance(value, list) else [value]
        unique = len({k for k in kinds if isinstance(k, str)}) == len(kinds)
        return bool(kinds) and unique and all(k in _TYPES for k in kinds)
    if key == "enum":
        return isinstance(value, list)
    if key == "required":
        return (
            isinstance(value, list)
            and all(isinstance(v, str) for v in value)
            and len(set(value)) == len(value)
        )
    if key == "properties":
        return isinstance(value, dict) and all(
            is_plain_valid_schema(v, depth + 1) for v in value.values()
        )
    if key in ("items", "additionalProperties", "not"):
        return is_plain_valid_schema(value, depth + 1)
    if key in ("allOf", "anyOf", "oneOf"):  # a non-empty list of schemas
        return (
            isinstance(value, list)
            and bool(value)
            and all(is_plain_valid_schema(v, depth + 1) for v in value)
        )
    if key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        return _number(value)
    if key in ("minItems", "maxItems", "minProperties", "maxProperties", "minLength", "maxLength"):
        return isinstance(value, int) and not isinstance(value, bool) and value >= 0
    if key == "uniqueItems":
        return isinstance(value, bool)
    if key == "pattern":
        if not isinstance(value, str):
            return False
        try:
            re.compile(value)
        except re.error:
            return False
        return True
    return False
