"""Schema validation of a loaded document into positioned findings."""

from __future__ import annotations

import functools
import json
import math
from importlib import resources
from typing import TYPE_CHECKING, Any

from crank.manifest.findings import Finding, non_finite_number, quoted, schema_error_message
from crank.manifest.quickcheck import conforms

if TYPE_CHECKING:
    from jsonschema.exceptions import ValidationError
    from jsonschema.protocols import Validator

    from crank.manifest.loader import LoadedDocument

SCHEMA_RULE = "CRK002"
SCHEMA_VERSIONS = {"crank.dev/v1": "v1.json"}
CURRENT_API_VERSION = "crank.dev/v1"


@functools.cache
def manifest_schema(api_version: str = CURRENT_API_VERSION) -> dict[str, Any]:
    """The JSON Schema of a manifest version, as shipped inside the package."""
    name = SCHEMA_VERSIONS[api_version]
    text = resources.files("crank.manifest").joinpath("schemas", name).read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


@functools.cache
def _validator(api_version: str) -> Validator:
    from crank.manifest.jsonschema_lib import draft202012

    Draft202012Validator = draft202012()

    return Draft202012Validator(
        manifest_schema(api_version), format_checker=Draft202012Validator.FORMAT_CHECKER
    )


def _describe(value: Any) -> str:
    text = json.dumps(value, default=str)
    if len(text) > 40:
        text = text[:37] + "..."
    kind = {
        dict: "a mapping",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        type(None): "null",
    }.get(type(value), type(value).__name__)
    return f"{kind} {text}" if not isinstance(value, dict | list) else kind


def _close_match(word: str, choices: list[str]) -> str | None:
    import difflib  # only for hints

    close = difflib.get_close_matches(word, choices, n=1)
    return close[0] if close else None


def _allowed(schema: dict[str, Any]) -> list[str]:
    return sorted(schema.get("properties", {}))


def _finding_for(doc: LoadedDocument, err: ValidationError) -> Finding:
    from jsonschema.exceptions import best_match

    if err.validator in ("oneOf", "anyOf") and err.context:
        err = best_match(err.context)
    path: tuple[str | int, ...] = tuple(err.absolute_path)
    key = False
    validator = err.validator
    schema = err.schema if isinstance(err.schema, dict) else {}
    hint: str | None = None
    if validator == "additionalProperties":
        extras = (
            [k for k in err.instance if k not in schema.get("properties", {})]
            if isinstance(err.instance, dict)
            else []
        )
        extra = extras[0] if extras else "?"
        path = (*path, extra)
        key = True
        allowed = _allowed(schema)
        close = _close_match(extra, allowed)
        message = f"unknown field {quoted(extra)}"
        hint = f"did you mean {close!r}?" if close else f"allowed fields: {', '.join(allowed)}"
        if not allowed and "additionalProperties" in schema:
            message = f"field {quoted(extra)} has an invalid value"
            hint = None
    elif validator == "required":
        missing = str(err.message).split("'")[1] if "'" in err.message else "?"
        message = f"missing required field {missing!r}"
        hint = f"add `{missing}:` here"
    elif validator == "type":
        expected = err.validator_value
        expected_s = " or ".join(expected) if isinstance(expected, list) else str(expected)
        message = f"expected {expected_s}, got {_describe(err.instance)}"
        hint = f"change the value to {'an' if expected_s[0] in 'aeiou' else 'a'} {expected_s}"
        written = doc.spellings.get(path)
        if written is not None and "string" in expected_s:
            # `version: 1.10` is the number 1.1 and `name: no` the boolean false to YAML
            kind = "a boolean" if isinstance(err.instance, bool) else "a number"
            message = (
                f"expected {expected_s}, got {_describe(err.instance)} "
                f"(YAML reads the unquoted {written} as {kind})"
            )
            hint = f"quote it to keep it as written: {json.dumps(written)}"
            if schema.get("format") == "date":  # quoting 20270331 makes no date
                hint = "write dates as YYYY-MM-DD"
        elif (
            isinstance(err.instance, str)
            and ("number" in expected_s or "integer" in expected_s)
            and (number := _number_as_text(err.instance)) is not None
        ):
            # YAML 1.1 takes an exponent only after a dot and with a sign: 1e3 is text
            message = (
                f"expected {expected_s}, got {_describe(err.instance)} "
                f"(YAML reads {err.instance} as text, not as a number)"
            )
            hint = f"write it as {number}"
    elif validator == "enum":
        options: list[Any] = list(err.validator_value)  # type: ignore[arg-type]
        choices = ", ".join(json.dumps(c) for c in options)
        message = f"{_describe(err.instance)} is not one of {choices}"
        close = _close_match(str(err.instance), [str(c) for c in options])
        hint = f"did you mean {close!r}?" if close else f"use one of {choices}"
    elif validator == "const":
        message = f"must be {json.dumps(err.validator_value)}, got {_describe(err.instance)}"
        hint = f"set it to {json.dumps(err.validator_value)}"
    elif validator == "pattern":
        desc = schema.get("description") or ""
        message = f"{_describe(err.instance)} does not have the expected form"
        hint = desc or f"it must match the pattern {err.validator_value}"
    elif validator == "format":
        message = f"{_describe(err.instance)} is not a valid {err.validator_value}"
        hint = "write dates as YYYY-MM-DD" if err.validator_value == "date" else None
    elif validator in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        message = f"{quoted(err.instance)} is out of range ({validator} {err.validator_value})"
        hint = "use a value within the allowed range"
    elif validator in ("minItems", "minProperties"):
        message = "must not be empty"
        hint = "add at least one entry"
    else:
        message = schema_error_message(err)
    line, col = doc.position(path, key=key)
    return Finding(
        file=doc.file, line=line, col=col, rule=SCHEMA_RULE, message=message, path=path, hint=hint
    )


def _non_finite_findings(doc: LoadedDocument) -> list[Finding]:
    """A finding for every NaN or infinity (YAML's ``.nan``, ``.inf``) in ``doc``.

    The schema cannot refuse them: NaN fails no ``minimum`` or ``maximum`` comparison,
    so a ``timeout_s: .nan`` passed and crashed the renderers later. A manifest is
    JSON data, and JSON has no such numbers.
    """
    if non_finite_number(doc.data) is None:
        return []
    found: list[Finding] = []

    def walk(value: Any, path: tuple[str | int, ...]) -> None:
        if isinstance(value, float) and not math.isfinite(value):
            word = (
                "NaN (.nan)"
                if math.isnan(value)
                else "infinity (.inf)"
                if value > 0
                else "minus infinity (-.inf)"
            )
            line, col = doc.position(path)
            found.append(
                Finding(
                    file=doc.file,
                    line=line,
                    col=col,
                    rule=SCHEMA_RULE,
                    message=f"{word} is not a usable number: a manifest holds JSON "
                    "numbers, which are finite",
                    path=path,
                    hint="write a finite number here",
                )
            )
        elif isinstance(value, dict):
            for key, child in value.items():
                walk(child, (*path, key))
        elif isinstance(value, list):
            for index, child in enumerate(value):
                walk(child, (*path, index))

    walk(doc.data, ())
    return found


def schema_findings(doc: LoadedDocument) -> list[Finding]:
    """Every schema violation of ``doc`` as a positioned finding, in document order."""
    data = doc.data
    api_version = data.get("apiVersion") if isinstance(data, dict) else None
    if api_version not in SCHEMA_VERSIONS:
        api_version = CURRENT_API_VERSION
    non_finite = _non_finite_findings(doc)
    if not non_finite and conforms(data, manifest_schema(api_version)):
        return []  # certainly valid: no need to import jsonschema
    errors = _validator(api_version).iter_errors(data)
    # "inf is out of range" says less than the non-finite finding at the same place
    odd = {f.path for f in non_finite}
    findings = {f for f in map(functools.partial(_finding_for, doc), errors) if f.path not in odd}
    findings |= set(non_finite)
    return sorted(findings, key=lambda f: (f.line, f.col, f.message))


def _number_as_text(text: str) -> str | None:
    """``text`` written as a number YAML reads (``1e3`` -> ``1000``), when it is one
    that YAML read as text; else None."""
    try:
        value = float(text)
    except ValueError:
        return None
    if not math.isfinite(value) or text.strip() != text or "e" not in text.lower():
        return None
    if value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    mantissa, _, exponent = repr(value).partition("e")
    if not exponent:
        return mantissa
    return f"{mantissa if '.' in mantissa else mantissa + '.0'}e{int(exponent):+d}"
