"""A positioned problem in a manifest, as every manifest tool reports it."""

from __future__ import annotations

import json
import json.decoder
import json.scanner
import math
import re
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from collections.abc import Callable

Severity = Literal["error", "warning", "info"]


def json_path(parts: tuple[str | int, ...]) -> str:
    """``("capabilities", 0, "id")`` -> ``$.capabilities[0].id``."""
    out = "$"
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else f".{p}"
    return out


def _all_finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(map(_all_finite, value.values()))
    if isinstance(value, list | tuple):
        return all(map(_all_finite, value))
    return True


def _non_finite_at(value: Any, path: tuple[str | int, ...]) -> tuple[str, float] | None:
    if isinstance(value, float):
        return None if math.isfinite(value) else (json_path(path), value)
    children: Any = ()
    if isinstance(value, dict):
        children = value.items()
    elif isinstance(value, list | tuple):
        children = enumerate(value)
    for key, child in children:
        if (found := _non_finite_at(child, (*path, key))) is not None:
            return found
    return None


def non_finite_number(value: Any) -> tuple[str, float] | None:
    """(JSON path, the number) of the first NaN or infinity in ``value``, else None: JSON
    (RFC 8259) has no form for them; Python's ``json`` writes ``NaN``, which no strict
    JSON reader (a browser's, the HTTP API's) takes. One quick walk; the path is looked
    for only when there is one."""
    return None if _all_finite(value) else _non_finite_at(value, ())


def _no_constant(name: str) -> Any:
    # json.loads takes NaN, Infinity and -Infinity, which are not JSON (RFC 8259)
    raise ValueError(f"{name} is not a JSON value (RFC 8259 has no NaN or Infinity)")


def _finite(number: str) -> float:
    # json.loads reads 1e309 as inf: an input would hold what no JSON can write back
    value = float(number)
    if math.isinf(value):
        shown = number if len(number) <= 40 else f"{number[:30]}... ({len(number)} characters)"
        raise ValueError(
            f"the number {shown} is beyond the range of a 64-bit float (about ±1.8e308)"
        )
    return value


#: what a number too large for a float needs: an exponent of 3 digits or more, or 309
#: digits in a row (a cheap scan: only a body with one is read number by number).
_HUGE_TEXT = re.compile(r"[eE]\+?[0-9]{3}|[0-9]{309}")
_HUGE_BYTES = re.compile(rb"[eE]\+?[0-9]{3}|[0-9]{309}")


class _DuplicateKey(Exception):
    def __init__(self, key: str) -> None:
        self.key = key
        #: offsets of the key's first and second occurrences, once an object knows them
        self.offsets: tuple[int, int] | None = None


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return out


_JSON_SPACE = re.compile(r"[ \t\n\r]*")


def _after_space(text: str, idx: int) -> int:
    match = _JSON_SPACE.match(text, idx)
    return match.end() if match else idx


def _key_offsets(text: str, start: int, scan_once: Any) -> dict[str, list[int]]:
    """The offsets of the keys of the JSON object whose text starts at ``start`` (just
    after its ``{``), read again: the object parsed up to its last pair already."""
    offsets: dict[str, list[int]] = {}
    idx = _after_space(text, start)
    while idx < len(text) and text[idx] == '"':
        key, end = json.decoder.scanstring(text, idx + 1)  # type: ignore[attr-defined]
        offsets.setdefault(key, []).append(idx)
        end = _after_space(text, end) + 1  # past the ':'
        _, end = scan_once(text, _after_space(text, end))
        idx = _after_space(text, end)
        if idx < len(text) and text[idx] == ",":
            idx = _after_space(text, idx + 1)
    return offsets


class _PositionedDecoder(json.JSONDecoder):
    """A pure-Python decoder that finds where a duplicate key is: each object it parses
    knows where it starts (the C scanner, used for every document without one, does
    not say)."""

    def __init__(self) -> None:
        super().__init__(object_pairs_hook=_unique_pairs, parse_constant=_no_constant)
        self.parse_object = self._parse_object
        self.scan_once = json.scanner.py_make_scanner(self)  # type: ignore[attr-defined]

    def _parse_object(self, s_and_end: tuple[str, int], *args: Any) -> Any:
        try:
            return json.decoder.JSONObject(s_and_end, *args)  # type: ignore[attr-defined]
        except _DuplicateKey as exc:
            if exc.offsets is None:  # the innermost object holds the pair
                text, start = s_and_end
                found = _key_offsets(text, start, args[1]).get(exc.key, [])
                if len(found) > 1:
                    exc.offsets = (found[0], found[1])
            raise


def _duplicate_key_error(text: str | bytes, key: str) -> json.JSONDecodeError:
    """The JSONDecodeError of a document with ``key`` twice in one object, at the second."""
    doc = text if isinstance(text, str) else text.decode(json.detect_encoding(text))
    shown = json_quoted(key)
    try:
        _PositionedDecoder().decode(doc)
    except _DuplicateKey as exc:
        if exc.offsets is not None:
            first, second = exc.offsets
            line = doc.count("\n", 0, first) + 1
            col = first - doc.rfind("\n", 0, first)
            message = f"duplicate key {shown} (first at line {line} column {col})"
            return json.JSONDecodeError(message, doc, second)
    return json.JSONDecodeError(f"duplicate key {shown}", doc, 0)


#: strict_json's decoders, built once (``json.loads`` with keyword arguments builds a
#: decoder and its scanner on every call: about 2 us, more than a small body's parse).
#: A body without a comma cannot hold an object of two pairs, so it needs no look for
#: a key given twice, and skips the per-object Python call that look costs.
_DECODERS = {
    (unique, finite): json.JSONDecoder(
        parse_constant=_no_constant,
        parse_float=_finite if finite else None,
        object_pairs_hook=_unique_pairs if unique else None,
    )
    for unique in (False, True)
    for finite in (False, True)
}


def _decoded_text(text: str | bytes | bytearray) -> str:
    # what json.loads does before it decodes: no BOM in a str; bytes in UTF-8/16/32
    if isinstance(text, str):
        if text.startswith("\ufeff"):
            raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
        return text
    return text.decode(json.detect_encoding(text), "surrogatepass")


def strict_json(text: str | bytes) -> Any:
    """``json.loads`` without NaN and the infinities (a ValueError naming them, as for a
    number beyond a float's range), and without a key given twice in one object (a
    JSONDecodeError at the second: JSON readers disagree on which one wins), as the
    HTTP API, the console and ``crank invoke`` read an input."""
    if isinstance(text, str):
        huge = _HUGE_TEXT.search(text) is not None
        unique = "," in text
    else:
        huge = _HUGE_BYTES.search(text) is not None
        unique = b"," in text
    try:
        return _DECODERS[unique, huge].decode(_decoded_text(text))
    except _DuplicateKey as exc:
        raise _duplicate_key_error(text, exc.key) from None
    except ValueError as exc:
        if type(exc) is ValueError and "integer string conversion" in str(exc):
            # Python's own words name sys.set_int_max_str_digits(), a fix for the
            # server's code, not for the one who sent the number
            raise ValueError(
                f"a number has more than {sys.get_int_max_str_digits()} digits"
            ) from None
        raise


def json_kind(value: Any) -> str:
    """What ``value`` is, in JSON's words: "an array", "null"... (for messages)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"


def lone_surrogate(value: Any, path: tuple[str | int, ...] = ()) -> tuple[str, str] | None:
    """(JSON path, the surrogate) of the first string (or key) in a parsed JSON ``value``
    that holds a lone UTF-16 surrogate, else None. ``"\\ud800"`` parses, but is no
    Unicode character: no UTF-8 text (a worker's, an answer's) can hold it."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            return json_path(path), value[exc.start]
        return None
    if not isinstance(value, dict | list):
        return None
    items: Any = value.items() if isinstance(value, dict) else enumerate(value)
    for key, item in items:
        if isinstance(key, str) and (found := lone_surrogate(key, path)) is not None:
            return found
        if (found := lone_surrogate(item, (*path, key))) is not None:
            return found
    return None


#: The longest quote of a manifest's value in a finding; the HTTP API quotes as long.
MAX_QUOTED = 60


def _shortened(value: Any, shown: str, write: Callable[[str], str], whole: str) -> str:
    """``shown`` (how ``value`` is written), or its first characters and how long it is:
    a string's first characters written by ``write`` with its length in characters, else
    the first characters of ``shown`` with its length, ``whole`` naming what was counted."""
    if len(shown) <= MAX_QUOTED:
        return shown
    keep = MAX_QUOTED - 20
    if isinstance(value, str):
        return f"{write(value[:keep])}... ({len(value)} characters)"
    return f"{shown[:keep]}... ({len(shown)} characters {whole})"


def quoted(value: Any) -> str:
    """``repr(value)``, or its first characters and how long it is: a finding about a
    100,000-character description must not print the description.

    The HTTP API quotes the values of its errors with it too (through
    ``crank.worker.validation``).
    """
    return _shortened(value, repr(value), repr, "as Python shows it")


def _json_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def json_quoted(value: Any) -> str:
    """``value`` as JSON writes it (``true``, ``null``, ``"text"``, ``["a", 1]``), or its
    first characters and how long it is (see :func:`quoted`)."""
    return _shortened(value, _json_text(value), _json_text, "of JSON")


def _alternative_fields(validator: Any, expected: Any) -> list[str] | None:
    """The fields of ``oneOf``/``anyOf: [{required: [a]}, {required: [b]}]`` (one of
    several ways to send a thing), else None: jsonschema's words for these quote the
    subschemas as Python dicts and never name a field."""
    if validator not in ("oneOf", "anyOf") or not isinstance(expected, list) or not expected:
        return None
    fields: list[str] = []
    for sub in expected:
        if not isinstance(sub, dict) or set(sub) != {"required"}:
            return None
        names = sub["required"]
        if not isinstance(names, list) or len(names) != 1 or not isinstance(names[0], str):
            return None
        fields.append(names[0])
    return fields


def schema_error_message(error: Any) -> str:
    """A jsonschema error's message in JSON's words: the values it quotes as JSON writes
    them (``true is not of type "string"``, not ``True is not of type 'string'``: the
    reader may know no Python), a long one cut short."""
    validator, instance, expected = error.validator, error.instance, error.validator_value
    message = str(error.message)
    if validator == "type":
        types = expected if isinstance(expected, list) else [expected]
        message = f"{json_quoted(instance)} is not of type {', '.join(map(json.dumps, types))}"
    elif validator == "enum":
        message = f"{json_quoted(instance)} is not one of {json_quoted(expected)}"
    elif validator == "const":
        message = f"{json_quoted(expected)} was expected"
    elif validator == "format":
        message = f"{json_quoted(instance)} is not a valid {expected}"
    elif validator == "required":
        missing = [p for p in expected if message == f"{p!r} is a required property"]
        if missing:
            message = f"{json_quoted(missing[0])} is a required property"
    elif (fields := _alternative_fields(validator, expected)) is not None:
        names = ", ".join(json.dumps(f, ensure_ascii=False) for f in fields)
        if "is valid under each of" in message:  # oneOf: more than one was given
            message = f"only one of {names} may be given"
        elif validator == "oneOf":
            message = f"exactly one of {names} is required"
        else:
            message = f"at least one of {names} is required"
    elif validator in ("additionalProperties", "unevaluatedProperties") and isinstance(
        instance, dict
    ):
        head, sep, names = message.partition("(")
        for key in instance:  # the unexpected ones are quoted in the parentheses
            names = names.replace(repr(key), json.dumps(key, ensure_ascii=False))
        message = head + sep + names
    else:
        whole = repr(instance)
        if message.startswith(whole):  # "5 is greater than...", "'ab' is too short"
            message = json_quoted(instance) + message[len(whole) :]
        if isinstance(expected, str | list | dict) and repr(expected) in message:
            message = message.replace(repr(expected), json_quoted(expected), 1)  # a pattern
    # another quoted value (a long enum, a pattern) can still make it long
    limit = 4 * MAX_QUOTED
    return message if len(message) <= limit else f"{message[:limit]}..."


@dataclass(frozen=True, order=True)
class Finding:
    """One problem: where (file, line, col, JSON path), which rule, what and how to fix."""

    file: str
    line: int
    col: int
    rule: str
    message: str
    severity: Severity = "error"
    path: tuple[str | int, ...] = ()
    hint: str | None = None

    @property
    def json_path(self) -> str:
        return json_path(self.path)

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "line": self.line,
            "col": self.col,
            "rule": self.rule,
            "severity": self.severity,
            "message": self.message,
            "json_path": self.json_path,
            "hint": self.hint,
        }

    def format_text(self) -> str:
        """``file:line:col CRKxxx message [$.json.path]`` plus the hint on its own line."""
        level = "" if self.severity == "error" else f"{self.severity}: "
        where = f"{self.file}:{self.line}:{self.col}"
        text = f"{where} {self.rule} {level}{self.message} [{self.json_path}]"
        if self.hint:
            text += f"\n    hint: {self.hint}"
        return text
