"""``crank check``: re-render every managed artifact, diff it against the committed
file, and cross-check what the files mean against the manifest and the code."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from crank.generate.crosscheck import cross_check
from crank.generate.drift import DriftFinding, compare_files, orphaned_files
from crank.generate.pydeps import write_dependencies
from crank.generate.render import render_each, write_files

if TYPE_CHECKING:
    from pathlib import Path

    from crank.generate.project import WorkerProject


@dataclass(frozen=True)
class ProjectCheck:
    """The outcome of checking one project."""

    root: Path
    manifest: str
    findings: tuple[DriftFinding, ...] = ()
    fixed: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.findings

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.root),
            "manifest": self.manifest,
            "ok": self.ok,
            "fixed": list(self.fixed),
            "findings": [f.as_dict() for f in self.findings],
        }


def check_project(project: WorkerProject, *, fix: bool = False) -> ProjectCheck:
    """Diff every managed artifact and run the semantic cross-checks.

    With ``fix``, missing and drifted files are re-rendered first; what remains
    (a code/manifest mismatch, say) is reported. A renderer that raises is a
    finding naming it and its plugin; the other artifacts are still checked.
    """
    fixed_deps: list[str] = []
    if fix and write_dependencies(project):
        fixed_deps.append("pyproject.toml")
    rendering = render_each(project)
    files = rendering.files
    failed = {f.artifact for f in rendering.failures}
    findings = [*compare_files(project.root, files), *orphaned_files(project.root, files, failed)]
    fixed: tuple[str, ...] = tuple(fixed_deps)
    if fix and findings:
        stale = {f.file for f in findings if f.kind not in ("orphan", "unreadable")}
        write_files(project.root, [f for f in files if f.path in stale])
        gone = {f.file for f in findings if f.kind == "orphan"}
        remove_files(project.root, gone)
        fixed = tuple(sorted(stale | gone | set(fixed_deps)))
        findings = [
            *compare_files(project.root, files),
            *orphaned_files(project.root, files, failed),
        ]
    findings.extend(
        DriftFinding(
            project.manifest_relpath,
            "renderer",
            f"{f.message}; its files were left as they are (not checked, not removed)",
            artifact=f.artifact,
        )
        for f in rendering.failures
    )
    findings.extend(cross_check(project))
    return ProjectCheck(project.root, project.manifest_relpath, tuple(findings), fixed)


def remove_files(root: Path, relpaths: set[str]) -> None:
    """Delete generated files no renderer makes any more, and folders they leave empty."""
    base = root.resolve()
    for rel in sorted(relpaths):
        target = (base / rel).resolve()
        if not target.is_relative_to(base) or not target.is_file():
            continue
        target.unlink()
        for folder in target.parents:
            if folder == base or not folder.is_relative_to(base) or any(folder.iterdir()):
                break
            folder.rmdir()


__all__ = ["ProjectCheck", "check_project"]
