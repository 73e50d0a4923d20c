"""Capability input/output validation: a compiled fast path, jsonschema for the details.

Validating every task is on the hot path of the runtime: jsonschema costs tens of
microseconds per call, a compiled fastjsonschema validator about one. The
compiled validator is used only for schemas made of keywords it implements with
the same meaning as draft 2020-12 (no ``$ref``, ``format``, ``prefixItems``,
``unevaluated*``...), and only to say *valid*: whenever it rejects an instance,
jsonschema runs and its answer (with JSON paths) is the one reported. So the
fast path can make validation quicker, never more lenient or differently worded.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from crank.manifest.findings import json_path, schema_error_message

if TYPE_CHECKING:
    from jsonschema.protocols import Validator

#: Keywords whose fastjsonschema (draft-07) behaviour matches draft 2020-12.
_SAME_MEANING = frozenset(
    {
        "type", "enum", "const", "properties", "required", "additionalProperties",
        "patternProperties", "propertyNames", "minProperties", "maxProperties",
        "items", "minItems", "maxItems", "uniqueItems", "contains",
        "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf",
        "minLength", "maxLength", "pattern", "allOf", "anyOf", "oneOf", "not",
        "if", "then", "else",
        # annotations: no effect on validity
        "title", "description", "default", "examples", "deprecated", "readOnly",
        "writeOnly", "$comment", "$schema", "$id",
    }
)  # fmt: skip
_SUBSCHEMA = (
    "additionalProperties",
    "items",
    "not",
    "propertyNames",
    "contains",
    "if",
    "then",
    "else",
)
_SUBSCHEMA_MAPS = ("properties", "patternProperties")
_SUBSCHEMA_LISTS = ("allOf", "anyOf", "oneOf")


def fast_path_applies(schema: Any) -> bool:
    """True when every keyword of ``schema`` (recursively) has the same meaning in both."""
    if isinstance(schema, bool):
        return True
    if not isinstance(schema, Mapping) or not set(schema) <= _SAME_MEANING:
        return False
    if "$schema" in schema and "2020-12" not in str(schema["$schema"]):
        return False
    for key in _SUBSCHEMA:
        if key in schema and not fast_path_applies(schema[key]):
            return False
    for key in _SUBSCHEMA_MAPS:
        if key in schema and not all(fast_path_applies(s) for s in schema[key].values()):
            return False
    return all(
        isinstance(schema.get(key, []), list)
        and all(fast_path_applies(s) for s in schema.get(key, []))
        for key in _SUBSCHEMA_LISTS
    )


#: The most problems one answer lists (a huge invalid list would otherwise list them all).
MAX_REPORTED = 20

#: jsonschema's message, with the offending value (quoted in full by jsonschema) cut
#: short: worded as a manifest finding quotes a value (one wording for every message).
error_message = schema_error_message


def schema_errors(validator: Validator, instance: Any) -> list[dict[str, str]]:
    """``[{"path": "$.a[0]", "message": ...}]`` for the violations, sorted by path.

    A long offending value is quoted by a short prefix and its length (an answer
    must not echo a 450 KB string); past :data:`MAX_REPORTED` problems, one last
    entry says how many more there are.
    """
    errors = sorted(
        (
            {"path": json_path(tuple(e.absolute_path)), "message": error_message(e)}
            for e in validator.iter_errors(instance)
        ),
        key=lambda e: e["path"],
    )
    if len(errors) > MAX_REPORTED:
        more = len(errors) - MAX_REPORTED + 1
        errors = [
            *errors[: MAX_REPORTED - 1],
            {"path": "$", "message": f"and {more} more problems not listed"},
        ]
    return errors


class SchemaValidator:
    """Validates instances of one JSON Schema; compiled lazily on first use."""

    def __init__(self, schema: Mapping[str, Any] | bool) -> None:
        self.schema: Any = dict(schema) if isinstance(schema, Mapping) else schema
        self._fast: Callable[[Any], Any] | None = None
        self._fast_ready = False
        self._full: Validator | None = None

    @property
    def full(self) -> Validator:
        """The jsonschema validator (draft 2020-12, with format checks)."""
        if self._full is None:
            # on first use: the fast path answers valid inputs, and loading a worker
            # (crank lint, a worker process starting) need not pay for jsonschema
            from crank.manifest.jsonschema_lib import draft202012

            Draft202012Validator = draft202012()

            self._full = Draft202012Validator(
                self.schema, format_checker=Draft202012Validator.FORMAT_CHECKER
            )
        return self._full

    def _compiled(self) -> Callable[[Any], Any] | None:
        if not self._fast_ready:
            self._fast_ready = True
            if fast_path_applies(self.schema):
                try:
                    import fastjsonschema  # on the first validation, like jsonschema above

                    self._fast = fastjsonschema.compile(self.schema, use_default=False)
                except Exception:  # any compile problem just means no fast path
                    self._fast = None
        return self._fast

    def errors(self, instance: Any) -> list[dict[str, str]]:
        """Every violation with its JSON path; ``[]`` when the instance is valid."""
        fast = self._compiled()
        if fast is not None:
            try:
                fast(instance)
                return []
            except Exception:  # a rejection is confirmed, and worded, by jsonschema below
                return schema_errors(self.full, instance)
        return schema_errors(self.full, instance)
