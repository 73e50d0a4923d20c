"""Compare two JSON Schemas of one capability for changes that break existing clients.

Input is *narrowed* when some payload the old schema accepted is refused by the
new one: a new required field, a type narrowed, an enum value removed, a value
constraint tightened (``minimum``, ``maxLength``, ``pattern``, ``format``...),
``additionalProperties`` tightened (or a property no longer accepted). Output is
*broken* when a client reading the old shape can be surprised: a required field
removed, a type changed to include something new, an enum value added, a value
constraint loosened.

The comparison walks ``properties``, ``items`` and ``additionalProperties``; ``$ref``
and the combinators (``anyOf``/``oneOf``/``allOf``) are compared only as a whole
(changed or not). Two assumptions keep the everyday
changes compatible, as clients written against the old schema behave: they do not
send an input field the old schema did not declare (so declaring one now is not
reported), and they ignore output fields the old schema did not describe (so
adding output fields, or lifting ``additionalProperties: false``, is not reported).
"""

from __future__ import annotations

import json
import math
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
    "constraint_narrowed",
    "constraint_widened",
]

ALL_TYPES = frozenset({"null", "boolean", "object", "array", "number", "string", "integer"})
_COMBINATORS = ("$ref", "anyOf", "oneOf", "allOf", "not", "if", "then", "else")

Schema = Any


SchemaPath = tuple[str | int, ...]


@dataclass(frozen=True)
class SchemaChange:
    """One incompatible difference at ``path`` (a JSON path into the *instance*).

    ``schema_path`` locates the responsible keyword in the new schema (or the
    nearest thing there), so a finding can point at its line.
    """

    kind: ChangeKind
    path: str
    detail: str
    schema_path: SchemaPath = ()


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


def _at(schema: Schema, at: SchemaPath, *keys: str) -> SchemaPath:
    """``at`` plus the first of ``keys`` that ``schema`` has (else ``at`` itself)."""
    for key in keys:
        if isinstance(schema, dict) and key in schema:
            return (*at, key)
    return at


def _required_at(schema: Schema, at: SchemaPath, name: str) -> SchemaPath:
    req = schema.get("required") if isinstance(schema, dict) else None
    if isinstance(req, list) and name in req:
        return (*at, "required", req.index(name))
    return _at(schema, at, "required")


#: Keywords that bound a value from below / above, each with its exclusive twin.
_LOWER = ("minimum", "exclusiveMinimum")
_UPPER = ("maximum", "exclusiveMaximum")
_MIN_COUNTS = ("minLength", "minItems", "minProperties", "minContains")
_MAX_COUNTS = ("maxLength", "maxItems", "maxProperties", "maxContains")
#: Keywords whose any change (or addition) may refuse a value the old schema took.
_OPAQUE = ("pattern", "format", "multipleOf", "propertyNames", "dependentRequired")


def _number(schema: Schema, key: str) -> float | None:
    value = schema.get(key) if isinstance(schema, dict) else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value


def _bound(schema: Schema, inclusive: str, exclusive: str, *, lower: bool) -> tuple[float, bool]:
    """The tighter of ``inclusive``/``exclusive`` as (value, exclusive); none: infinite."""
    found: list[tuple[float, bool]] = []
    for key, is_exclusive in ((inclusive, False), (exclusive, True)):
        value = _number(schema, key)
        if value is not None:
            found.append((value, is_exclusive))
    if not found:
        return (-math.inf if lower else math.inf), False
    # at the same value the exclusive bound is the tighter one
    return max(found) if lower else min(found, key=lambda b: (b[0], not b[1]))


def _show(schema: Schema, keys: tuple[str, ...]) -> str:
    shown = [f"{k}: {_key(schema[k])}" for k in keys if isinstance(schema, dict) and k in schema]
    return ", ".join(shown) or "none"


def tightened_constraints(old: Schema, new: Schema) -> list[tuple[str, ...]]:
    """The value constraints by which ``new`` refuses some value ``old`` allowed (a bound
    raised or lowered, a length limit, a pattern, a format...), each as the keywords
    of its kind, the one to point at first."""
    out: list[tuple[str, ...]] = []
    for lower, (inclusive, exclusive) in ((True, _LOWER), (False, _UPPER)):
        before = _bound(old, inclusive, exclusive, lower=lower)
        after = _bound(new, inclusive, exclusive, lower=lower)
        tighter = after[0] > before[0] if lower else after[0] < before[0]
        if tighter or (after[0] == before[0] and after[1] and not before[1]):
            keys = (exclusive, inclusive) if exclusive in new else (inclusive, exclusive)
            out.append(keys)
    for key in _MIN_COUNTS:
        if (_number(new, key) or 0) > (_number(old, key) or 0):
            out.append((key,))
    for key in _MAX_COUNTS:
        before_m, after_m = _number(old, key), _number(new, key)
        if after_m is not None and (before_m is None or after_m < before_m):
            out.append((key,))
    if not isinstance(new, dict):
        return out
    if new.get("uniqueItems") is True and not (
        isinstance(old, dict) and old.get("uniqueItems") is True
    ):
        out.append(("uniqueItems",))
    for key in _OPAQUE:
        was = old.get(key) if isinstance(old, dict) else None
        if key in new and _key(new[key]) != _key(was) and _asserts(key, new[key]):
            out.append((key,))
    return out


def _asserts(key: str, value: Any) -> bool:
    """False for a ``format`` no validator checks (``int32``): it refuses nothing."""
    if key != "format":
        return True
    from crank.manifest.jsonschema_lib import draft202012

    Draft202012Validator = draft202012()

    return value in Draft202012Validator.FORMAT_CHECKER.checkers


def _constraint_detail(verb: str, old: Schema, new: Schema, keys: tuple[str, ...]) -> str:
    return f"{keys[0]} {verb}: {_show(old, keys)} before, {_show(new, keys)} now"


def _type_detail(verb: str, old: Schema, new: Schema) -> str:
    return f"type {verb} from {_names(_types(old))} to {_names(_types(new))}"


def input_narrowings(
    old: Schema, new: Schema, path: str = "$", at: SchemaPath = ()
) -> list[SchemaChange]:
    """Every way ``new`` refuses a payload that ``old`` accepted (as far as can be told).

    ``at`` is where ``new`` sits in its document; each change's ``schema_path`` extends it.
    """
    out: list[SchemaChange] = []

    def add(kind: ChangeKind, where: str, detail: str, schema_path: SchemaPath) -> None:
        out.append(SchemaChange(kind, where, detail, schema_path))

    if _combinators(old) != _combinators(new):
        add(
            "composition_changed",
            path,
            "$ref/anyOf/oneOf/allOf changed",
            _at(new, at, *_COMBINATORS),
        )
    if not _enum_only(new) and _types(old) - _types(new):
        add("type_narrowed", path, _type_detail("narrowed", old, new), _at(new, at, "type"))
    for keys in tightened_constraints(old, new):
        detail = _constraint_detail("tightened", old, new, keys)
        add("constraint_narrowed", path, detail, _at(new, at, *keys))
    old_enum, new_enum = _enum(old), _enum(new)
    if new_enum is not None:
        allowed = {_key(v) for v in new_enum}
        where = _at(new, at, "enum", "const")
        if old_enum is None:
            add("enum_removed", path, f"values now restricted to {new_enum}", where)
        elif removed := [v for v in old_enum if _key(v) not in allowed]:
            shown = ", ".join(json.dumps(v) for v in removed)
            add("enum_removed", path, f"enum value(s) removed: {shown}", where)
    for name in sorted(_required(new) - _required(old)):
        add("required_added", f"{path}.{name}", "new required field", _required_at(new, at, name))
    old_ap = old.get("additionalProperties", True) if isinstance(old, dict) else True
    new_ap = new.get("additionalProperties", True) if isinstance(new, dict) else True
    ap_at: SchemaPath = (*at, "additionalProperties")
    if new_ap is False and old_ap is not False:
        detail = "additionalProperties tightened to false: unknown fields are now refused"
        add("additional_properties_tightened", path, detail, ap_at)
    elif isinstance(new_ap, dict) and old_ap is True:
        detail = "additionalProperties tightened to a schema: extra fields must now match it"
        add("additional_properties_tightened", path, detail, ap_at)
    elif isinstance(new_ap, dict) and isinstance(old_ap, dict):
        out.extend(input_narrowings(old_ap, new_ap, f"{path}.*", ap_at))
    old_props, new_props = _props(old), _props(new)
    for name in sorted(set(old_props) - set(new_props)):
        # an undeclared field now falls under the new additionalProperties
        if new_ap is False:
            add("property_rejected", f"{path}.{name}", "field no longer accepted",
                _at(new, at, "properties", "additionalProperties"))  # fmt: skip
        elif isinstance(new_ap, dict):
            out.extend(input_narrowings(old_props[name], new_ap, f"{path}.{name}", ap_at))
    for name in sorted(set(old_props) & set(new_props)):
        sub: SchemaPath = (*at, "properties", name)
        out.extend(input_narrowings(old_props[name], new_props[name], f"{path}.{name}", sub))
    old_items = old.get("items") if isinstance(old, dict) else None
    new_items = new.get("items") if isinstance(new, dict) else None
    if isinstance(new_items, dict):
        before = old_items if old_items is not None else {}
        out.extend(input_narrowings(before, new_items, f"{path}[*]", (*at, "items")))
    return out


def output_breaks(
    old: Schema, new: Schema, path: str = "$", at: SchemaPath = ()
) -> list[SchemaChange]:
    """Every way ``new`` output can surprise a client written against ``old``."""
    out: list[SchemaChange] = []

    def add(kind: ChangeKind, where: str, detail: str, schema_path: SchemaPath) -> None:
        out.append(SchemaChange(kind, where, detail, schema_path))

    if _combinators(old) != _combinators(new):
        add(
            "composition_changed",
            path,
            "$ref/anyOf/oneOf/allOf changed",
            _at(new, at, *_COMBINATORS),
        )
    if not _enum_only(old) and _types(new) - _types(old):
        add("type_changed", path, _type_detail("changed", old, new), _at(new, at, "type"))
    # a client relying on a bound (a length that fits its column) may now get more
    for keys in tightened_constraints(new, old):
        detail = _constraint_detail("loosened", old, new, keys)
        add("constraint_widened", path, detail, _at(new, at, *keys))
    old_enum, new_enum = _enum(old), _enum(new)
    if old_enum is not None:
        known = {_key(v) for v in old_enum}
        where = _at(new, at, "enum", "const", "type")
        if new_enum is None:
            add("enum_added", path, f"no longer restricted to {old_enum}", where)
        elif added := [v for v in new_enum if _key(v) not in known]:
            shown = ", ".join(json.dumps(v) for v in added)
            add("enum_added", path, f"new enum value(s): {shown}", where)
    dropped = _required(old) - _required(new)
    for name in sorted(dropped):
        add("required_removed", f"{path}.{name}", "required field removed",
            _at(new, at, "required", "properties"))  # fmt: skip
    old_props, new_props = _props(old), _props(new)
    new_ap = new.get("additionalProperties", True) if isinstance(new, dict) else True
    for name in sorted(set(old_props) - set(new_props)):
        # no longer declared: the field now falls under the new additionalProperties
        if isinstance(new_ap, dict):
            ap_at: SchemaPath = (*at, "additionalProperties")
            out.extend(output_breaks(old_props[name], new_ap, f"{path}.{name}", ap_at))
        elif new_ap is True and old_props[name] not in ({}, True) and name not in dropped:
            detail = "field no longer declared: any value may come back"
            add("type_changed", f"{path}.{name}", detail, _at(new, at, "properties"))
    old_ap = old.get("additionalProperties", True) if isinstance(old, dict) else True
    if isinstance(old_ap, dict):  # clients were promised a shape for undeclared fields
        extra_at: SchemaPath = (*at, "additionalProperties")
        if isinstance(new_ap, dict):
            out.extend(output_breaks(old_ap, new_ap, f"{path}.*", extra_at))
        elif new_ap is True:
            detail = "additionalProperties no longer constrained: any extra value may come back"
            add("type_changed", f"{path}.*", detail, at)
        for name in sorted(set(new_props) - set(old_props)):
            sub_at: SchemaPath = (*at, "properties", name)
            out.extend(output_breaks(old_ap, new_props[name], f"{path}.{name}", sub_at))
    for name in sorted(set(old_props) & set(new_props)):
        sub: SchemaPath = (*at, "properties", name)
        out.extend(output_breaks(old_props[name], new_props[name], f"{path}.{name}", sub))
    old_items = old.get("items") if isinstance(old, dict) else None
    new_items = new.get("items") if isinstance(new, dict) else None
    if isinstance(old_items, dict):
        after = new_items if new_items is not None else {}
        out.extend(output_breaks(old_items, after, f"{path}[*]", (*at, "items")))
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
