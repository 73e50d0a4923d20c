"""Strict mode: when a missing dependency fails a test instead of skipping it.

Resolution, first match wins:

1. ``--crank-require=all|declared|none|NAME,...`` on the command line;
2. the ``CRANK_REQUIRE`` environment variable, same values;
3. ``CI=true`` (also ``1``/``yes``): ``declared``;
4. otherwise off.

``declared`` requires every non-optional dependency declared in the crank.yaml
manifests of the project under test, and every dependency spec listed in the
``crank_dependencies`` ini option (what the test suite itself needs: a tool, a
test-only package). Those manifests are found predictably (see
:func:`discover_manifests`, which covers every layout ``crank new-worker`` and the
docs produce) and read only when a dependency is actually missing, so a green run
pays nothing for it. When neither declares anything, ``declared`` requires nothing
and says so.
"""

from __future__ import annotations

import glob
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from crank.errors import UsageError
from crank.testing.python_checks import DISTRIBUTION_OF_MODULE, OTHER_DISTRIBUTIONS_OF_MODULE
from crank.testing.specs import split_constraint

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from crank.testing.dependencies import DependencyResult

REQUIRE_ENV = "CRANK_REQUIRE"
StrictMode = Literal["off", "all", "declared", "names"]

#: Folders never searched for manifests, at any depth (virtualenvs, caches,
#: test fixtures that declare dependencies on purpose).
EXCLUDED_DIRS = frozenset(
    {".git", ".nox", ".tox", ".venv", "venv", "node_modules", "build", "dist", "fixtures"}
)
#: Where manifests are looked for, relative to the rootdir, before ``crank_manifests``:
#: the project root, a src layout (what ``crank new-worker`` makes) and a package one
#: folder down (docs/getting-started.md: ``crank.yaml`` beside ``__init__.py``).
DEFAULT_MANIFEST_GLOBS = (
    "crank.yaml",
    "*.crank.yaml",
    "src/*/crank.yaml",
    "src/*/*.crank.yaml",
    "*/crank.yaml",
    "*/*.crank.yaml",
)
#: Globs whose hits count only inside a Python package (a folder with ``__init__.py``),
#: so that ``docs/crank.yaml`` or an example folder is not taken for the project.
PACKAGE_ONLY_GLOBS = frozenset({"*/crank.yaml", "*/*.crank.yaml"})


def normalize(name: str) -> str:
    """PEP 503 style: ``Scikit_Learn`` -> ``scikit-learn`` (how names are compared)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def is_ci(environ: Mapping[str, str]) -> bool:
    return environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def dependency_keys(result: DependencyResult) -> frozenset[str]:
    """Every normalized name a result answers to in strict mode."""
    return spec_keys(result.spec, result.kind, result.name)


def spec_keys(spec: str, kind: str, name: str) -> frozenset[str]:
    """Every normalized name a spec of ``kind`` naming ``name`` answers to."""

    keys = {normalize(name), normalize(spec)}
    if "://" not in spec:  # a URL's query may hold "="; it has no constraint
        # "exe:pandoc>=2.17" answers to "exe:pandoc" too, as "numpy>=1.26" does to "numpy"
        keys.add(normalize(re.split(r"[<>=!~]", spec, maxsplit=1)[0].strip()))
    # bare onnxruntime is a kind of its own (onnxruntime:PROVIDER), checked as the module
    if kind in ("module", "onnxruntime") and "." not in name:
        distributions = (
            DISTRIBUTION_OF_MODULE.get(name, name),
            *OTHER_DISTRIBUTIONS_OF_MODULE.get(name, ()),
        )
        keys.update(normalize(each) for each in distributions)
    return frozenset(keys)


@dataclass(frozen=True)
class DeclaredDependency:
    """One dependency a manifest declares, with every name it may be asked by."""

    keys: frozenset[str]
    manifest: Path
    hint: str | None = None
    optional: bool = False
    #: a system dependency's ``version_command``, as an argv
    version_command: tuple[str, ...] | None = None


def discover_manifests(rootdir: Path, extra_globs: Sequence[str] = ()) -> list[Path]:
    """Manifests of the project under test.

    ``crank.yaml`` and ``*.crank.yaml`` at the rootdir, in ``src/*/`` and in a
    package folder one level down, plus every glob of the ``crank_manifests`` ini
    option (relative to the rootdir). Nothing inside :data:`EXCLUDED_DIRS` is ever used.
    """
    found: set[Path] = set()
    for pattern in (*DEFAULT_MANIFEST_GLOBS, *extra_globs):
        full = pattern if Path(pattern).is_absolute() else str(rootdir / pattern)
        for hit in glob.glob(full, recursive=True):  # noqa: PTH207 - absolute and relative globs alike
            path = Path(hit)
            if not path.is_file():
                continue
            if pattern in PACKAGE_ONLY_GLOBS and not (path.parent / "__init__.py").is_file():
                continue
            try:
                parts = path.resolve().relative_to(rootdir.resolve()).parts[:-1]
            except ValueError:
                parts = path.parts[:-1]
            if EXCLUDED_DIRS.isdisjoint(parts):
                found.add(path)
    return sorted(found)


def declared_dependencies(manifests: Iterable[Path]) -> list[DeclaredDependency]:
    """The ``dependencies`` section of each manifest, read leniently (YAML only)."""
    import yaml
    from packaging.requirements import InvalidRequirement, Requirement

    from crank.manifest.loader import UniqueKeyLoader, describe_yaml_error

    declared: list[DeclaredDependency] = []
    for path in manifests:
        try:
            # a key given twice is refused: its two values would disagree on what is declared
            text = path.read_text(encoding="utf-8")
            doc = yaml.load(text, Loader=UniqueKeyLoader) or {}  # noqa: S506 - a SafeLoader
        except yaml.MarkedYAMLError as exc:
            line, col, problem, _ = describe_yaml_error(exc)
            raise UsageError(
                f"strict mode cannot read manifest {path}:{line}:{col}: {problem}",
                hint="fix the file (crank lint says more), or narrow the crank_manifests ini "
                "option",
                subject=str(path),
            ) from exc
        except (OSError, yaml.YAMLError) as exc:
            raise UsageError(
                f"strict mode cannot read manifest {path}: {exc}",
                hint="fix the file, or narrow the crank_manifests ini option",
                subject=str(path),
            ) from exc
        deps = doc.get("dependencies") if isinstance(doc, dict) else None
        if not isinstance(deps, dict):
            continue
        for requirement in deps.get("python") or ():
            try:
                name = Requirement(str(requirement)).name
            except InvalidRequirement:
                name = str(requirement)
            declared.append(
                DeclaredDependency(
                    frozenset({normalize(name)}), path, hint=f"pip install '{requirement}'"
                )
            )
        for system in deps.get("system") or ():
            if not isinstance(system, dict) or "name" not in system:
                continue
            keys = {normalize(str(system["name"]))}
            check = str(system.get("check") or "")
            if check:
                keys.add(normalize(check))
                keys.add(normalize(_check_name(check)))
            hint = system.get("hint") or (
                f"apt-get install {system['apt']}" if system.get("apt") else None
            )
            command = system.get("version_command")
            declared.append(
                DeclaredDependency(
                    frozenset(keys),
                    path,
                    hint=hint,
                    optional=bool(system.get("optional", False)),
                    version_command=_argv(command) if isinstance(command, str) else None,
                )
            )
    return declared


def _argv(command: str) -> tuple[str, ...] | None:
    import shlex

    try:
        return tuple(shlex.split(command)) or None
    except ValueError:  # unbalanced quotes: crank lint reports the manifest
        return None


def _check_name(check: str) -> str:
    """``exe:pandoc>=2.17`` -> ``pandoc`` (the name a result for that check carries)."""

    prefix, colon, rest = check.partition(":")
    if colon and "//" not in rest and prefix in ("exe", "module", "dist"):
        check = rest
    try:
        return split_constraint(check)[0]
    except UsageError:
        return check


def suite_dependencies(specs: Iterable[str], where: Path) -> list[DeclaredDependency]:
    """The ``crank_dependencies`` ini option: specs the test suite declares in ``where``."""
    declared = []
    for spec in specs:
        keys = {normalize(spec), normalize(_check_name(spec))}
        declared.append(DeclaredDependency(frozenset(keys), where))
    return declared


class StrictPolicy:
    """Decides, per missing dependency, whether the test must fail."""

    def __init__(
        self,
        mode: StrictMode,
        source: str,
        *,
        names: Iterable[str] = (),
        rootdir: Path | None = None,
        manifest_globs: Sequence[str] = (),
        suite_specs: Sequence[str] = (),
        suite_file: Path | None = None,
    ) -> None:
        self.mode: StrictMode = mode
        self.source = source
        #: the names as given (said back when one matches nothing)
        self.given_names = tuple(names)
        self.names = frozenset(normalize(n) for n in names)
        self.rootdir = rootdir
        self.manifest_globs = tuple(manifest_globs)
        #: the ``crank_dependencies`` ini option, and the file that sets it
        self.suite_specs = tuple(suite_specs)
        self.suite_file = suite_file or Path(rootdir or ".", "pyproject.toml")
        self._manifests: list[Path] | None = None
        self._declared: list[DeclaredDependency] | None = None
        self._lock = threading.RLock()

    @classmethod
    def resolve(
        cls,
        option: str | None,
        environ: Mapping[str, str],
        *,
        rootdir: Path | None = None,
        manifest_globs: Sequence[str] = (),
        suite_specs: Sequence[str] = (),
        suite_file: Path | None = None,
    ) -> StrictPolicy:
        if option is not None and option.strip():  # blank is not given, as for the variable
            value, source = option, f"--crank-require={option}"
        elif environ.get(REQUIRE_ENV, "").strip():
            value, source = environ[REQUIRE_ENV], f"{REQUIRE_ENV}={environ[REQUIRE_ENV]}"
        elif is_ci(environ):
            value, source = "declared", f"CI={environ.get('CI')}"
        else:
            value, source = "none", "default"
        value = value.strip()

        def build(mode: StrictMode, names: Iterable[str] = ()) -> StrictPolicy:
            return cls(
                mode,
                source,
                names=names,
                rootdir=rootdir,
                manifest_globs=manifest_globs,
                suite_specs=suite_specs,
                suite_file=suite_file,
            )

        lowered = value.lower()
        if lowered in ("none", "off", ""):
            return build("off")
        if lowered == "all":
            return build("all")
        if lowered == "declared":
            return build("declared")
        names = [n.strip() for n in value.split(",") if n.strip()]
        if not names:  # "," alone: required nothing without a word
            raise UsageError(
                f"{source}: names no dependency",
                hint="give all, declared or none, or dependency names: "
                "--crank-require=pandoc,redis://127.0.0.1:6379",
                subject=value,
            )
        keywords = [n for n in names if n.lower() in ("all", "declared", "none", "off")]
        if keywords:
            # taken for a dependency's name, 'declared' would silently require nothing more
            raise UsageError(
                f"{source}: {keywords[0]!r} cannot be combined with dependency names",
                hint="give all, declared or none alone, or a list of names; to require "
                "more than the manifests declare, list it in the crank_dependencies ini option",
                subject=value,
            )
        return build("names", names)

    def describe(self) -> str:
        if self.mode == "off":
            return "off (missing dependencies skip)"
        if self.mode == "all":
            return f"all dependencies required ({self.source})"
        if self.mode == "names":
            return f"required: {', '.join(sorted(self.names))} ({self.source})"
        globs = ", ".join((*DEFAULT_MANIFEST_GLOBS, *self.manifest_globs))
        manifests = self.manifests()
        if not manifests and not self.suite_specs:
            return (
                f"{self.source}, but no crank.yaml manifest declares any, so missing "
                f"dependencies skip (searched {globs}; add globs with the crank_manifests "
                "ini option)"
            )
        places = [_relative(m, self.rootdir) for m in manifests]
        if self.suite_specs:
            places.append(f"crank_dependencies of {_relative(self.suite_file, self.rootdir)}")
        return f"dependencies declared in {', '.join(places)} required ({self.source})"

    def manifests(self) -> list[Path]:
        """The project's manifests (found once; globbing only, nothing is read)."""
        with self._lock:
            if self._manifests is None:
                self._manifests = (
                    discover_manifests(self.rootdir, self.manifest_globs) if self.rootdir else []
                )
            return self._manifests

    def declared(self) -> list[DeclaredDependency]:
        with self._lock:
            if self._declared is None:
                self._declared = [
                    *declared_dependencies(self.manifests()),
                    *suite_dependencies(self.suite_specs, self.suite_file),
                ]
            return self._declared

    def version_command(self, name: str) -> tuple[str, ...] | None:
        """The version command a declared manifest gives program ``name``, if any."""
        key = normalize(name)
        for dep in self.declared():
            if dep.version_command and key in dep.keys:
                return dep.version_command
        return None

    def unmatched_names(self, used: Iterable[str]) -> list[str]:
        """Required names (``names`` mode) that none of the ``used`` keys nor any
        declared dependency answers to: misspelt, they require nothing."""
        if self.mode != "names":
            return []
        known = set(used)
        unmatched = [n for n in self.given_names if normalize(n) not in known]
        if unmatched:
            declared = {key for dep in self.declared() for key in dep.keys}
            unmatched = [n for n in unmatched if normalize(n) not in declared]
        return unmatched

    def match_declared(self, result: DependencyResult) -> DeclaredDependency | None:
        keys = dependency_keys(result)
        for dep in self.declared():
            if not dep.optional and not keys.isdisjoint(dep.keys):
                return dep
        return None

    def requirement(self, result: DependencyResult) -> tuple[str, str | None] | None:
        """``(why it is required, the manifest's hint)`` or None when a skip is fine."""
        if self.mode == "off":
            return None
        if self.mode == "all":
            return f"strict mode: {self.source}", None
        if self.mode == "names":
            if self.names.isdisjoint(dependency_keys(result)):
                return None
            return f"strict mode: {self.source}", None
        dep = self.match_declared(result)
        if dep is None:
            return None
        where = _relative(dep.manifest, self.rootdir)
        return f"strict mode: {self.source} and {where} declares it", dep.hint


def _relative(path: Path, rootdir: Path | None) -> str:
    if rootdir is not None:
        try:
            return str(path.resolve().relative_to(rootdir.resolve()))
        except ValueError:
            pass
    return str(path)


_policies: list[StrictPolicy] = []


def push_policy(policy: StrictPolicy) -> None:
    _policies.append(policy)


def pop_policy(policy: StrictPolicy) -> None:
    if policy in _policies:
        _policies.remove(policy)


def current_policy() -> StrictPolicy | None:
    """The policy of the innermost running pytest session (None outside pytest)."""
    return _policies[-1] if _policies else None
