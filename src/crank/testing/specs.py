"""Dependency spec strings and how their kind is decided.

The grammar is small and predictable (no guessing from names):

1. ``SCHEME://...`` is a service: the kind is the scheme (``redis://127.0.0.1:6379``).
2. ``KIND:REST`` where ``KIND`` is a registered kind (``exe:pandoc``,
   ``onnxruntime:CUDAExecutionProvider``); an unknown prefix is an error.
3. A bare name that is itself a registered kind (``gpu``, ``nvidia-gpu``, a
   plugin's ``libreoffice``) is that kind.
4. Anything else is a Python module (``numpy``, ``torch.cuda``).

Any name may end in a version constraint (``numpy>=1.26``, ``exe:pandoc>=2.17``,
``numpy>=1.26,<3``), compared with :mod:`packaging` specifiers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from crank.errors import UsageError

if TYPE_CHECKING:
    from collections.abc import Collection, Sequence

_CONSTRAINT_START = re.compile(r"[<>=!~]")
_MODULE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
#: PEP 508 names (the name part of a requirement)
_DISTRIBUTION_NAME = re.compile(r"^([A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9._-]*[A-Za-z0-9])$")
#: what no program name on PATH holds: a version written without an operator
_NOT_IN_A_PROGRAM = re.compile(r"[\s,]")
_URL = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<rest>.*)$")

#: Kinds that are parsed here rather than registered by a checker plugin.
MODULE_KIND = "module"


@dataclass(frozen=True)
class DependencySpec:
    """One parsed spec.

    ``name`` is what the summary and strict mode call the dependency: the module,
    the executable, ``KIND:TARGET`` for a sub-capability, or the URL (without a
    password) for a service. ``target`` is what follows ``KIND:`` (None for a
    bare kind); ``constraint`` is the version specifier text, if any.
    """

    raw: str
    kind: str
    name: str
    target: str | None = None
    constraint: str | None = None
    url: str | None = None
    #: how to print the version (``("java", "-version")``) when the usual flags do not
    #: (``exe:`` checks; from a manifest's ``version_command`` or ``ensure_dependency``).
    version_command: tuple[str, ...] | None = None


def version_argv(command: str | Sequence[str] | None) -> tuple[str, ...] | None:
    """A version command as an argv: ``"java -version"`` -> ``("java", "-version")``."""
    if command is None:
        return None
    import shlex

    argv = tuple(shlex.split(command)) if isinstance(command, str) else tuple(command)
    if not argv or not all(isinstance(part, str) and part for part in argv):
        raise UsageError(
            f"version command {command!r} names no program",
            hint="write it like 'java -version'",
            subject=str(command),
        )
    return argv


def split_constraint(text: str, spec: str | None = None) -> tuple[str, str | None]:
    """``"numpy>=1.26"`` -> ``("numpy", ">=1.26")``; the constraint is validated.

    ``spec`` is the whole spec ``text`` is part of (``exe:pandoc>=2``), for the error.
    """
    match = _CONSTRAINT_START.search(text)
    if match is None:
        return text.strip(), None
    name, constraint = text[: match.start()].strip(), text[match.start() :].strip()
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    try:
        SpecifierSet(constraint)
    except InvalidSpecifier:
        raise UsageError(
            f"dependency spec {spec or text!r}: {constraint!r} is not a version constraint",
            hint="write it like 'numpy>=1.26' or 'exe:pandoc>=2.17,<4'",
            subject=spec or text,
        ) from None
    return name, constraint


def redact_url(url: str) -> str:
    """The URL with any password replaced by ``***`` (names and summaries are printed)."""
    return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", url)


def parse_spec(raw: str, kinds: Collection[str]) -> DependencySpec:
    """Decide the kind of ``raw`` given the registered ``kinds`` (see the module doc)."""
    text = raw.strip()
    if not text:
        raise UsageError("empty dependency spec", hint="name a module, 'exe:NAME', 'gpu' or a URL")
    url = _URL.match(text)
    if url is not None:
        scheme = url.group("scheme").lower()
        if scheme not in kinds:
            raise UsageError(
                f"dependency spec {raw!r}: no checker for {scheme}:// services",
                hint=f"known kinds: {', '.join(sorted(kinds))}",
                subject=raw,
            )
        return DependencySpec(raw=raw, kind=scheme, name=redact_url(text), url=text)
    prefix, colon, rest = text.partition(":")
    if colon:
        prefix = prefix.strip()
        if prefix not in kinds:
            raise UsageError(
                f"dependency spec {raw!r}: unknown kind {prefix!r}",
                hint=f"known kinds: {', '.join(sorted(kinds))}; a plugin adds kinds through "
                "the crank_register_dependency_checkers hook",
                subject=raw,
            )
        target, constraint = split_constraint(rest, raw)
        if not target:
            raise UsageError(
                f"dependency spec {raw!r}: nothing after {prefix + ':'!r}",
                hint=f"write it like '{prefix}:NAME'",
                subject=raw,
            )
        name = target if prefix in (MODULE_KIND, "exe", "dist") else f"{prefix}:{target}"
        if prefix == MODULE_KIND:
            _check_module_name(raw, target)
        elif prefix == "exe" and _NOT_IN_A_PROGRAM.search(target):
            raise UsageError(
                f"dependency spec {raw!r}: {target!r} is not a program",
                hint="a version follows an operator: write it like 'exe:pandoc>=2.17'",
                subject=raw,
            )
        elif prefix == "dist" and not _DISTRIBUTION_NAME.match(target):
            raise UsageError(
                f"dependency spec {raw!r}: {target!r} is not a distribution name",
                hint="write it like 'dist:nvidia-ml-py>=12'",
                subject=raw,
            )
        return DependencySpec(raw=raw, kind=prefix, name=name, target=target, constraint=constraint)
    name, constraint = split_constraint(text)
    if name in kinds and name != MODULE_KIND:
        return DependencySpec(raw=raw, kind=name, name=name, constraint=constraint)
    _check_module_name(raw, name)
    return DependencySpec(raw=raw, kind=MODULE_KIND, name=name, target=name, constraint=constraint)


def _check_module_name(raw: str, name: str) -> None:
    if not _MODULE_NAME.match(name):
        raise UsageError(
            f"dependency spec {raw!r}: {name!r} is not a Python module name",
            hint="use 'dist:NAME' for a pip distribution, 'exe:NAME' for a program, "
            "or a registered kind such as 'gpu'",
            subject=raw,
        )


def unmet_constraint(name: str, version: str | None, constraint: str | None) -> str | None:
    """Why ``version`` does not satisfy ``constraint`` (None when it does or none is set)."""
    if constraint is None:
        return None
    if version is None:
        return f"{name} is installed but its version is unknown, so {constraint} cannot be checked"
    from packaging.specifiers import SpecifierSet
    from packaging.version import InvalidVersion, Version

    try:
        parsed = Version(version)
    except InvalidVersion:
        return f"{name} {version} is installed; that version cannot be compared with {constraint}"
    if SpecifierSet(constraint).contains(parsed, prereleases=True):
        return None
    return f"{name} {version} is installed but {constraint} is required"
