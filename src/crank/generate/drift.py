"""Drift: how a committed artifact differs from what its renderer makes of the manifest.

:mod:`crank.generate.check` runs the whole ``crank check`` (drift plus the
semantic cross-checks of :mod:`crank.generate.crosscheck`).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from crank.generate.render import STAMP_MARK, content_digest

if TYPE_CHECKING:
    from collections.abc import Collection, Sequence
    from pathlib import Path

    from crank.generate.render import RenderedFile

#: missing, unreadable or drifted file, a generated file no longer rendered, a meaning
#: mismatch, or a renderer that failed.
FindingKind = Literal["missing", "unreadable", "drift", "orphan", "semantic", "renderer"]


@dataclass(frozen=True)
class DriftFinding:
    """One problem: a missing or drifted artifact, or a meaning mismatch."""

    file: str  # relative to the project root
    kind: FindingKind
    message: str
    artifact: str = ""
    hunks: tuple[str, ...] = ()  # unified diff hunks, committed -> rendered
    line: int = 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "kind": self.kind,
            "artifact": self.artifact,
            "line": self.line,
            "message": self.message,
            "hunks": list(self.hunks),
        }


def diff_hunks(committed: str, rendered: str, path: str) -> tuple[str, ...]:
    """Unified diff hunks (each starting with ``@@``) from committed to rendered."""
    lines = list(
        difflib.unified_diff(
            committed.splitlines(keepends=True),
            rendered.splitlines(keepends=True),
            fromfile=f"a/{path}",
            tofile=f"b/{path}",
            n=2,
        )
    )
    hunks: list[list[str]] = []
    for line in lines[2:]:
        if line.startswith("@@"):
            hunks.append([])
        if hunks:
            hunks[-1].append(line if line.endswith("\n") else line + "\n")
    return tuple("".join(h) for h in hunks)


def _first_changed_line(hunk: str) -> int:
    """Line of the committed file where a hunk's first change is ("@@ -12,3 ...")."""
    header, _, body = hunk.partition("\n")
    try:
        line = int(header.split()[1].lstrip("-").split(",")[0])
    except (IndexError, ValueError):
        return 1
    for text in body.splitlines():
        if not text.startswith(" "):
            break
        line += 1
    return max(line, 1)


_STAMP_FIELDS = re.compile(r"(template|content)=(\S+)")


def stale_reason(committed: str, rendered: str) -> str:
    """Why a file drifted, from the provenance stamps: an older template, a file that is
    as it was rendered (so its inputs changed), or one edited by hand since."""

    def fields(text: str) -> dict[str, str]:
        for line in text.split("\n", 3)[:3]:  # the stamp is on one of the first lines
            if STAMP_MARK in line:
                return dict(_STAMP_FIELDS.findall(line))
        return {}

    old, new = fields(committed), fields(rendered)
    if not old:
        return "; it has no crank provenance stamp"
    reasons = []
    if old.get("template") != new.get("template"):
        reasons.append(f"rendered with template {old.get('template')}, now {new.get('template')}")
    if "content" not in old:
        # without its digest nothing tells a hand edit from a change of the inputs
        reasons.append("its stamp has no content digest to tell whether it was edited")
    elif old["content"] != content_digest(committed):
        reasons.append("edited by hand")
    elif not reasons:
        reasons.append("the manifest (or crank) changed since it was rendered")
    return "; " + ", ".join(reasons)


def compare_files(root: Path, files: Sequence[RenderedFile]) -> list[DriftFinding]:
    findings: list[DriftFinding] = []
    for file in files:
        target = root / file.path
        if target.exists() and not target.is_file():
            findings.append(_unreadable(file, "it is a directory, not a file"))
            continue
        if not target.is_file():
            findings.append(
                DriftFinding(
                    file.path,
                    "missing",
                    f"managed artifact {file.artifact!r} is missing",
                    artifact=file.artifact,
                )
            )
            continue
        try:
            committed = target.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            findings.append(_unreadable(file, exc.strerror or str(exc)))
            continue
        if committed == file.content:
            continue
        hunks = diff_hunks(committed, file.content, file.path)
        findings.append(
            DriftFinding(
                file.path,
                "drift",
                f"{file.path} differs from what {file.artifact!r} renders from the manifest "
                f"({len(hunks)} hunk{'s' if len(hunks) != 1 else ''}"
                f"{stale_reason(committed, file.content)})",
                artifact=file.artifact,
                hunks=hunks,
                line=_first_changed_line(hunks[0]) if hunks else 1,
            )
        )
    return findings


def _unreadable(file: RenderedFile, why: str) -> DriftFinding:
    """A managed artifact whose committed copy cannot be read, so cannot be compared.
    ``crank check --fix`` leaves it alone: what is there is not known to be crank's."""
    return DriftFinding(
        file.path,
        "unreadable",
        f"cannot read {file.path}, where {file.artifact!r} is rendered: {why}; make it a "
        "readable file, or move it away and run `crank check --fix` to render it again",
        artifact=file.artifact,
    )


def _stamped_artifact(path: Path) -> str | None:
    """The artifact named by a file's crank provenance stamp, if it has one."""
    try:
        with path.open(encoding="utf-8", errors="replace") as handle:
            head = [handle.readline() for _ in range(3)]
    except OSError:
        return None
    for line in head:
        if STAMP_MARK in line:
            match = re.search(r"artifact=(\S+)", line)
            return match.group(1) if match else ""
    return None


def orphaned_files(
    root: Path, files: Sequence[RenderedFile], failed: Collection[str] = ()
) -> list[DriftFinding]:
    """Files crank generated (they carry its stamp) that no renderer makes any more: the
    hpa overlay of a worker that now requires a GPU, the flat k8s/ files of templates
    before 2.0. Looked for where generated files live: the top folder, k8s/ and
    .github/workflows/.

    ``failed`` names the renderers that raised: what they would make is not known, so
    no file they may own (stamped with their name, or with no name) is an orphan;
    ``crank check --fix`` would otherwise delete every file of a renderer that broke.
    """
    rendered = {f.path for f in files}
    candidates = [p for p in root.iterdir() if p.is_file()] if root.is_dir() else []
    for folder in ("k8s", ".github/workflows"):
        if (root / folder).is_dir():
            candidates += [p for p in (root / folder).rglob("*") if p.is_file()]
    findings = []
    for path in sorted(candidates):
        rel = path.relative_to(root).as_posix()
        if rel in rendered or path.is_symlink():
            continue
        artifact = _stamped_artifact(path)
        if artifact is not None and failed and (not artifact or artifact in failed):
            continue
        if artifact is not None:
            findings.append(
                DriftFinding(
                    rel,
                    "orphan",
                    f"{rel} was generated by crank ({artifact or 'an artifact'}) but is no "
                    "longer rendered from the manifest; `crank check --fix` removes it",
                    artifact=artifact,
                )
            )
    return findings
