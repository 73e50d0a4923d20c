"""A worker project on disk: its root folder and the manifest inside it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from crank.errors import GenerateError
from crank.manifest import load_manifest

if TYPE_CHECKING:
    from crank.manifest import Manifest

#: Where a worker project keeps its manifest, most specific first.
MANIFEST_LOCATIONS = ("src/*/crank.yaml", "*/crank.yaml", "crank.yaml")


@dataclass(frozen=True)
class WorkerProject:
    """A folder with a pyproject and a crank.yaml (src layout or flat)."""

    root: Path
    manifest_path: Path
    manifest: Manifest

    @property
    def manifest_relpath(self) -> str:
        return self.manifest_path.relative_to(self.root).as_posix()

    @property
    def package(self) -> str:
        """Top-level import name of the worker (from ``worker.entrypoint``)."""
        return self.manifest.worker.module.split(".", 1)[0]


def _owner_problem(root: Path, manifest: Path) -> str | None:
    """Why ``manifest`` (found under ``root``) is not the manifest of the project ``root``.

    A manifest in a sub-folder belongs to ``root`` only if ``root`` holds the
    pyproject.toml and no folder between them holds one of its own (that folder
    would be another project, e.g. a child of the folder crank was pointed at).
    """
    between = [
        folder for folder in manifest.parents if folder != root and folder.is_relative_to(root)
    ]
    for folder in between:
        if (folder / "pyproject.toml").is_file():
            rel = folder.relative_to(root).as_posix()
            return f"{rel}/ is a worker project of its own (it has a pyproject.toml)"
    if between and not (root / "pyproject.toml").is_file():
        rel = manifest.relative_to(root).as_posix()
        return f"{rel} is in a sub-folder and {root} has no pyproject.toml"
    return None


def find_manifest(root: Path) -> Path:
    """The one crank.yaml of a project folder; errors say what was looked for.

    Only the project ``root`` itself is considered: a manifest of a project nested
    inside it is never adopted (``crank check --fix`` would write there otherwise).
    """
    if not root.is_dir():
        raise GenerateError(
            f"{root}: not a folder",
            hint="pass the folder of a worker project (the one holding pyproject.toml)",
            subject=str(root),
        )
    elsewhere: list[str] = []
    for pattern in MANIFEST_LOCATIONS:
        found = []
        for path in sorted(p for p in root.glob(pattern) if p.is_file()):
            problem = _owner_problem(root, path)
            if problem is None:
                found.append(path)
            else:
                elsewhere.append(problem)
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            names = ", ".join(p.relative_to(root).as_posix() for p in found)
            raise GenerateError(
                f"{root}: several manifests ({names})",
                hint="pass --manifest to say which one the artifacts are rendered from",
                subject=str(root),
            )
    if elsewhere:
        raise GenerateError(
            f"{root}: not a worker project: {'; '.join(elsewhere)}",
            hint="point crank at the worker project's own folder (the one holding its "
            "pyproject.toml), e.g. `crank check plugins/*`",
            subject=str(root),
        )
    raise GenerateError(
        f"{root}: no crank.yaml found (looked for {', '.join(MANIFEST_LOCATIONS)})",
        hint="run this in a worker project, or create one with `crank new-worker NAME`",
        subject=str(root),
    )


def project_root_of(manifest_path: Path) -> Path:
    """The nearest folder above a manifest that holds a pyproject.toml (else its folder)."""
    for folder in manifest_path.parents:
        if (folder / "pyproject.toml").is_file():
            return folder
    return manifest_path.parent


def load_project(root: Path | str | None, manifest: Path | str | None = None) -> WorkerProject:
    """Load the project at ``root``; ``manifest`` overrides the discovered crank.yaml.

    With only ``manifest``, the root is the nearest folder above it with a pyproject.toml.
    """

    if manifest is None:
        root_path = Path(root if root is not None else ".").resolve()
        manifest_path = find_manifest(root_path)
    else:
        manifest_path = Path(manifest).resolve()
        if not manifest_path.is_file():
            raise GenerateError(
                f"{manifest}: manifest not found",
                hint="pass the path of a crank.yaml",
                subject=str(manifest),
            )
        root_path = Path(root).resolve() if root is not None else project_root_of(manifest_path)
        if not manifest_path.is_relative_to(root_path):
            raise GenerateError(
                f"{manifest}: the manifest is not inside the project folder {root_path}",
                hint="pass a manifest that lives in the project",
                subject=str(manifest),
            )
    return WorkerProject(root_path, manifest_path, load_manifest(manifest_path))
