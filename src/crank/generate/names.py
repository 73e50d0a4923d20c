"""Validation of worker names and capability ids given to ``crank new-worker``."""

from __future__ import annotations

import importlib.util
import keyword
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from crank.errors import GenerateError

WORKER_NAME = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
CAPABILITY_ID = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
#: Import names a worker package must never take (they would shadow something).
RESERVED = frozenset({"crank", "test", "tests", "site", "builtins", "src", "setup", "conftest"})
#: Words YAML 1.1 (Kubernetes' reader) reads as a boolean or null, not as a name.
YAML_WORDS = frozenset({"y", "n", "yes", "no", "on", "off", "true", "false", "null"})


@dataclass(frozen=True)
class WorkerNames:
    """The names derived from what the user typed."""

    worker: str  # distribution and manifest name: "text-echo"
    package: str  # import name: "text_echo"
    class_name: str  # "TextEcho" (the class is TextEchoWorker)


def _normalise(raw: str) -> str:
    return re.sub(r"[-_\s]+", "-", raw.strip().lower()).strip("-")


def _taken_by(package: str) -> str | None:
    """Where an importable top-level module ``package`` lives, unless it is a crank worker.

    A crank worker of that name (a package with a crank.yaml) may be re-scaffolded.
    """
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    locations = [Path(p) for p in (spec.submodule_search_locations or ())]
    if spec.origin and spec.origin not in ("built-in", "frozen"):
        locations.append(Path(spec.origin).parent)
    if any((loc / "crank.yaml").is_file() for loc in locations):
        return None
    return spec.origin or "a built-in module"


def worker_names(raw: str) -> WorkerNames:
    """Validate ``raw`` and derive the worker, package and class names."""
    hint = "use a plain name of lower-case letters, digits and dashes, e.g. text-echo"
    if not raw or raw.strip() != raw:
        raise GenerateError(
            f"worker name {raw!r} is empty or has surrounding spaces", hint=hint, subject=raw
        )
    if "/" in raw or "\\" in raw or raw.startswith((".", "~")) or ".." in raw:
        raise GenerateError(
            f"worker name {raw!r} looks like a path; names cannot contain '/', '\\\\', '..' "
            "or start with '.' or '~'",
            hint=f"{hint}; choose where it is written with --output-dir",
            subject=raw,
        )
    worker = _normalise(raw)
    package = worker.replace("-", "_")
    if not WORKER_NAME.match(worker) or not package.isidentifier() or not package.isascii():
        raise GenerateError(
            f"worker name {raw!r} does not normalise to a Python identifier (got {package!r})",
            hint=f"{hint}; it must start with a letter",
            subject=raw,
        )
    if len(worker) > 63:
        raise GenerateError(
            f"worker name {raw!r} is longer than 63 characters", hint=hint, subject=raw
        )
    if worker in YAML_WORDS:
        raise GenerateError(
            f"worker name {raw!r} reads as a boolean or null in YAML, not as a name "
            "(the manifest, Kubernetes and compose files name the worker unquoted)",
            hint=f"{hint}; e.g. {worker}-worker",
            subject=raw,
        )
    if keyword.iskeyword(package) or keyword.issoftkeyword(package):
        raise GenerateError(f"worker name {raw!r} is a Python keyword", hint=hint, subject=raw)
    if package in RESERVED or package in sys.stdlib_module_names:
        raise GenerateError(
            f"worker name {raw!r} is reserved: the package {package!r} would shadow "
            + ("crank or a tooling module" if package in RESERVED else "a standard library module"),
            hint=f"{hint}; prefix it, e.g. {worker}-worker",
            subject=raw,
        )
    owner = _taken_by(package)
    if owner is not None:
        raise GenerateError(
            f"worker name {raw!r}: the import name {package!r} is already taken by an installed "
            f"module ({owner})",
            hint=f"choose another name, e.g. {worker}-worker",
            subject=raw,
        )
    class_name = "".join(part.capitalize() for part in package.split("_"))
    return WorkerNames(worker, package, class_name)


def capability_ids(raw: tuple[str, ...] | list[str], package: str) -> tuple[str, ...]:
    """Validated, de-duplicated capability ids (default: ``<package>.echo``)."""
    ids = tuple(dict.fromkeys(c.strip() for c in raw if c.strip())) or (f"{package}.echo",)
    for cap in ids:
        if not CAPABILITY_ID.match(cap) or len(cap) > 128:
            raise GenerateError(
                f"capability id {cap!r} is not a dotted lower-case id",
                hint="use ids such as text.echo or email.spam_detection",
                subject=cap,
            )
        method = cap.replace(".", "_")
        if keyword.iskeyword(method) or method.startswith("_"):
            raise GenerateError(
                f"capability id {cap!r} makes an invalid method name {method!r}",
                hint="rename the capability",
                subject=cap,
            )
    return ids
