"""jsonschema, imported without the grammar it builds for two formats nobody may use.

``jsonschema[format-nongpl]`` checks the ``iri`` and ``iri-reference`` formats with
rfc3987-syntax, which jsonschema imports with itself and which builds a parser for
RFC 3987 as it is imported: 1.3 s of the 1.5 s ``import jsonschema`` costs (CPython
3.11, 2 vCPUs). The first input an HTTP process refuses, the first schema ``crank lint``
or ``crank compat`` cannot vouch for, paid it. crank imports jsonschema with that module
held back, and checks the two formats with it on their first use: only a schema using
them pays. Every use of jsonschema in crank goes through :func:`draft202012`.
"""

from __future__ import annotations

import functools
import importlib.util
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jsonschema.protocols import Validator

#: the module jsonschema imports for the IRI formats, and the rule each format uses.
_IRI_MODULE = "rfc3987_syntax"
_IRI_FORMATS = {"iri": "iri", "iri-reference": "iri_reference"}


def _iri_check(rule: str, instance: object) -> bool:
    if not isinstance(instance, str):
        return True
    from rfc3987_syntax import is_valid_syntax  # type: ignore[import-untyped, import-not-found, unused-ignore]

    return bool(is_valid_syntax(rule, instance))


@functools.cache
def draft202012() -> type[Validator]:
    """jsonschema's ``Draft202012Validator``, its ``FORMAT_CHECKER`` checking the IRI
    formats as jsonschema would (when rfc3987-syntax is installed), importing it then."""
    held = _IRI_MODULE not in sys.modules and "jsonschema" not in sys.modules
    if held:
        sys.modules[_IRI_MODULE] = None  # type: ignore[assignment]  # import fails: skipped
    try:
        from jsonschema import Draft202012Validator
    finally:
        if held:
            del sys.modules[_IRI_MODULE]
    checker = Draft202012Validator.FORMAT_CHECKER
    if importlib.util.find_spec(_IRI_MODULE) is not None:
        for name, rule in _IRI_FORMATS.items():
            if name not in checker.checkers:
                checker.checks(name, raises=ValueError)(functools.partial(_iri_check, rule))
    validator: Any = Draft202012Validator
    return validator  # type: ignore[no-any-return]


__all__ = ["draft202012"]
