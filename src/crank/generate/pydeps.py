"""The manifest's Python dependencies in pyproject.toml, where pip and uv read them.

``dependencies.python`` of crank.yaml says what the worker needs; pip, CI, the
tests and ``crank lock`` read ``[project].dependencies`` of pyproject.toml. crank
check reports every manifest requirement pyproject does not carry as written
(missing, or with another version range), and ``crank check --fix`` writes them
into pyproject.toml, keeping its formatting and comments (tomlkit). pyproject may
require more than the manifest (packages the manifest need not mention).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from crank.errors import GenerateError

if TYPE_CHECKING:
    from crank.generate.project import WorkerProject


@dataclass(frozen=True)
class DependencyGap:
    """A manifest requirement pyproject lacks (``current`` empty) or has otherwise."""

    wanted: str
    current: str = ""

    @property
    def message(self) -> str:
        if not self.current:
            return f"does not require {self.wanted!r}, which crank.yaml's dependencies.python lists"
        return (
            f"requires {self.current!r} where crank.yaml's dependencies.python says {self.wanted!r}"
        )


def _same(a: Requirement, b: Requirement) -> bool:
    return (a.specifier, a.extras, str(a.marker or "")) == (
        b.specifier,
        b.extras,
        str(b.marker or ""),
    )


def _parse(text: str, where: str) -> Requirement:
    try:
        return Requirement(text)
    except InvalidRequirement as exc:
        raise GenerateError(
            f"{where}: {text!r} is not a valid requirement ({exc})",
            hint="write requirements as PEP 508 strings such as 'numpy>=1.26'",
            subject=where,
        ) from None


def _pyproject_requirements(project: WorkerProject) -> list[str]:
    import tomllib

    path = project.root / "pyproject.toml"
    if not path.is_file():
        return []
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError):
        return []
    except OSError as exc:  # there, but not readable: its dependencies are unknown
        raise GenerateError(
            f"{path}: cannot read: {exc.strerror or exc}",
            hint="make pyproject.toml readable by this user (its dependencies are checked "
            "against the manifest's)",
            subject=str(path),
        ) from None
    deps = data.get("project", {}).get("dependencies", [])
    return [str(d) for d in deps] if isinstance(deps, list) else []


def dependency_gaps(project: WorkerProject) -> list[DependencyGap]:
    """Manifest requirements pyproject.toml does not hold as written."""
    if not (project.root / "pyproject.toml").is_file():
        return []
    have = {
        canonicalize_name(req.name): req
        for req in (_parse(d, "pyproject.toml") for d in _pyproject_requirements(project))
    }
    gaps = []
    for text in project.manifest.dependencies.python:
        wanted = _parse(text, project.manifest_relpath)
        current = have.get(canonicalize_name(wanted.name))
        if current is None:
            gaps.append(DependencyGap(text))
        elif not _same(current, wanted):
            gaps.append(DependencyGap(text, str(current)))
    return gaps


def write_dependencies(project: WorkerProject) -> list[DependencyGap]:
    """Put every manifest requirement into pyproject.toml's ``[project].dependencies``
    (replacing another range of the same package); returns what was changed."""
    import tomlkit

    gaps = dependency_gaps(project)
    if not gaps:
        return []
    path = project.root / "pyproject.toml"
    document = tomlkit.parse(path.read_text(encoding="utf-8"))
    table = document.get("project")
    if table is None:
        raise GenerateError(
            f"{path}: no [project] table to add the manifest's dependencies to",
            hint="add a [project] table with name, version and dependencies",
            subject=str(path),
        )
    deps = table.get("dependencies")
    if deps is None:
        deps = tomlkit.array()
        table["dependencies"] = deps
    for gap in gaps:
        if gap.current:
            name = canonicalize_name(Requirement(gap.wanted).name)
            for index, item in enumerate(list(deps)):
                if canonicalize_name(Requirement(str(item)).name) == name:
                    deps[index] = gap.wanted
        else:
            deps.append(gap.wanted)
    if len(deps) > 1:
        deps.multiline(True)
    path.write_text(tomlkit.dumps(document), encoding="utf-8")
    return gaps
