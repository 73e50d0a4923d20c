"""Compare two JSON Schemas of one capability for changes that break existing clients.

Input is *narrowed* when some payload the old schema accepted is refused by the
new one: a new required field, a type narrowed, an enum value removed,
``additionalProperties`` tightened (or a property no longer accepted). Output is
*broken* when a client reading the old shape can be surprised: a required field
removed, a type changed to include something new, an enum value added.

The comparison walks ``properties`` and ``items``; ``$ref`` and the combinators
(``anyOf``/``oneOf``/``allOf``) are compared only as a whole (changed or not).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

ChangeKind = Literal[
    "required_added",
    "type_narrowed",
    "enum_removed",
    "additional_properties_tightened",
    "property_rejected",
    "composition_changed",
    "required_removed",
    "type_changed",
    "enum_added",
]

ALL_TYPES = frozenset({"null", "boolean", "object", "array", "number", "string", "integer"})
_COMBINATORS = ("$ref", "anyOf", "oneOf", "allOf", "not", "if", "then", "else")

Schema = Any


@dataclass(frozen=True)
class SchemaChange:
    """One incompatible difference at ``path`` (a JSON path into the *instance*)."""

    kind: ChangeKind
    path: str
    detail: str


def _types(schema: Schema) -> frozenset[str]:
    if not isinstance(schema, dict):
        return ALL_TYPES if schema is not False else frozenset()
    declared = schema.get("type")
    if declared is None:
        values = _enum(schema)
        if values is not None:
            return frozenset(_json_type(v) for v in values) | (
                {"number"} if any(_json_type(v) == "integer" for v in values) else set()
            )
        return ALL_TYPES
    found = {declared} if isinstance(declared, str) else set(declared)
    if "number" in found:
        found.add("integer")  # every integer is a number
    return frozenset(found)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "integer" if value.is_integer() else "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _enum(schema: Schema) -> list[Any] | None:
    if not isinstance(schema, dict):
        return None
    if "const" in schema:
        return [schema["const"]]
    values = schema.get("enum")
    return list(values) if isinstance(values, list) else None


def _enum_only(schema: Schema) -> bool:
    """An enum/const without ``type``: the enum comparison says all there is to say."""
    return isinstance(schema, dict) and "type" not in schema and _enum(schema) is not None


def _key(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def _names(types: frozenset[str]) -> str:
    shown = sorted(types - {"integer"} if "number" in types else types)
    return ", ".join(shown) or "nothing"


def _props(schema: Schema) -> dict[str, Any]:
    props = schema.get("properties", {}) if isinstance(schema, dict) else {}
    return props if isinstance(props, dict) else {}


def _required(schema: Schema) -> set[str]:
    req = schema.get("required", []) if isinstance(schema, dict) else []
    return set(req) if isinstance(req, list) else set()


def _combinators(schema: Schema) -> str:
    if not isinstance(schema, dict):
        return ""
    return _key({k: schema[k] for k in _COMBINATORS if k in schema})


def input_narrowings(old: Schema, new: Schema, path: str = "$") -> list[SchemaChange]:
    """Every way ``new`` refuses a payload that ``old`` accepted (as far as can be told)."""
    out: list[SchemaChange] = []
    if _combinators(old) != _combinators(new):
        out.append(SchemaChange("composition_changed", path, "$ref/anyOf/oneOf/allOf changed"))
    lost = frozenset() if _enum_only(new) else _types(old) - _types(new)
    if lost:
        out.append(
            SchemaChange(
                "type_narrowed",
                path,
                f"type narrowed from {_names(_types(old))} to {_names(_types(new))}",
            )
        )
    old_enum, new_enum = _enum(old), _enum(new)
    if new_enum is not None:
        allowed = {_key(v) for v in new_enum}
        if old_enum is None:
            out.append(SchemaChange("enum_removed", path, f"values now restricted to {new_enum}"))
        else:
            removed = [v for v in old_enum if _key(v) not in allowed]
            if removed:
                shown = ", ".join(json.dumps(v) for v in removed)
                out.append(SchemaChange("enum_removed", path, f"enum value(s) removed: {shown}"))
    for name in sorted(_required(new) - _required(old)):
        out.append(SchemaChange("required_added", f"{path}.{name}", "new required field"))
    old_ap = old.get("additionalProperties", True) if isinstance(old, dict) else True
    new_ap = new.get("additionalProperties", True) if isinstance(new, dict) else True
    old_props, new_props = _props(old), _props(new)
    if new_ap is False and old_ap is not False:
        out.append(
            SchemaChange(
                "additional_properties_tightened",
                path,
                "additionalProperties tightened to false: unknown fields are now refused",
            )
        )
    elif isinstance(new_ap, dict) and old_ap is True:
        out.append(
            SchemaChange(
                "additional_properties_tightened",
                path,
                "additionalProperties tightened to a schema: extra fields must now match it",
            )
        )
    elif isinstance(new_ap, dict) and isinstance(old_ap, dict):
        out.extend(input_narrowings(old_ap, new_ap, f"{path}.*"))
    if new_ap is False:
        for name in sorted(set(old_props) - set(new_props)):
            out.append(
                SchemaChange("property_rejected", f"{path}.{name}", "field no longer accepted")
            )
    for name in sorted(set(old_props) & set(new_props)):
        out.extend(input_narrowings(old_props[name], new_props[name], f"{path}.{name}"))
    old_items = old.get("items") if isinstance(old, dict) else None
    new_items = new.get("items") if isinstance(new, dict) else None
    if isinstance(new_items, dict):
        out.extend(
            input_narrowings(old_items if old_items is not None else {}, new_items, f"{path}[*]")
        )
    return out


def output_breaks(old: Schema, new: Schema, path: str = "$") -> list[SchemaChange]:
    """Every way ``new`` output can surprise a client written against ``old``."""
    out: list[SchemaChange] = []
    if _combinators(old) != _combinators(new):
        out.append(SchemaChange("composition_changed", path, "$ref/anyOf/oneOf/allOf changed"))
    gained = frozenset() if _enum_only(old) else _types(new) - _types(old)
    if gained:
        out.append(
            SchemaChange(
                "type_changed",
                path,
                f"type changed from {_names(_types(old))} to {_names(_types(new))}",
            )
        )
    old_enum, new_enum = _enum(old), _enum(new)
    if old_enum is not None:
        known = {_key(v) for v in old_enum}
        added = [v for v in (new_enum or []) if _key(v) not in known]
        if new_enum is None:
            out.append(SchemaChange("enum_added", path, f"no longer restricted to {old_enum}"))
        elif added:
            shown = ", ".join(json.dumps(v) for v in added)
            out.append(SchemaChange("enum_added", path, f"new enum value(s): {shown}"))
    for name in sorted(_required(old) - _required(new)):
        out.append(SchemaChange("required_removed", f"{path}.{name}", "required field removed"))
    old_props, new_props = _props(old), _props(new)
    for name in sorted(set(old_props) & set(new_props)):
        out.extend(output_breaks(old_props[name], new_props[name], f"{path}.{name}"))
    old_items = old.get("items") if isinstance(old, dict) else None
    new_items = new.get("items") if isinstance(new, dict) else None
    if isinstance(old_items, dict):
        out.extend(
            output_breaks(old_items, new_items if new_items is not None else {}, f"{path}[*]")
        )
    return out


def without_field(schema: Schema, name: str) -> Schema:
    """``schema`` as the successor sees it after a shim dropped the selector ``name``."""
    if not isinstance(schema, dict):
        return schema
    trimmed = dict(schema)
    props = dict(_props(schema))
    props.pop(name, None)
    trimmed["properties"] = props
    if "required" in trimmed:
        trimmed["required"] = [r for r in schema["required"] if r != name]
    return trimmed
