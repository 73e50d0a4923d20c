"""Read the two sides of ``crank compat``: manifest files, or a file as of a git ref."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from crank.errors import ManifestError, UsageError

if TYPE_CHECKING:
    from crank.manifest import LoadedDocument, Manifest


def manifest_from_text(
    text: str, label: str, path: Path | None = None
) -> tuple[Manifest, LoadedDocument]:
    """Parse and schema-validate manifest ``text``; ``label`` names it in messages."""
    from crank.manifest import manifest_from_dict, schema_findings
    from crank.manifest.loader import parse_yaml

    doc = parse_yaml(text, label)
    errors = [f for f in schema_findings(doc) if f.severity == "error"]
    if errors:
        first = errors[0]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ManifestError(
            f"{first.file}:{first.line}:{first.col} {first.rule} {first.message}{more}",
            hint=first.hint or f"run `crank lint` on {label}",
            subject=label,
            findings=tuple(errors),
        )
    return manifest_from_dict(doc.data, path), doc


def manifest_from_file(path: Path | str) -> tuple[Manifest, LoadedDocument]:
    from crank.manifest import load_document, manifest_from_dict, schema_findings

    doc = load_document(path)
    errors = [f for f in schema_findings(doc) if f.severity == "error"]
    if errors:
        first = errors[0]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ManifestError(
            f"{first.file}:{first.line}:{first.col} {first.rule} {first.message}{more}",
            hint=first.hint or f"run `crank lint {path}` for every finding",
            subject=str(path),
            findings=tuple(errors),
        )
    return manifest_from_dict(doc.data, Path(path)), doc


def read_at_ref(ref: str, path: Path) -> str | None:
    """The text of ``path`` as of git ``ref``, or None when the file did not exist then.

    Raises :class:`UsageError` when ``path`` is not in a git work tree or ``ref``
    does not name a commit.
    """
    folder = path.resolve().parent
    if not folder.is_dir():
        raise UsageError(f"{path}: folder does not exist", subject=str(path))

    def git(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["git", "-C", str(folder), *args], capture_output=True, text=True, check=False
        )

    try:
        inside = git("rev-parse", "--is-inside-work-tree")
    except FileNotFoundError:
        raise UsageError(
            "--against needs git, which is not on PATH", hint="install git or compare two files"
        ) from None
    if inside.returncode != 0:
        raise UsageError(
            f"{path} is not inside a git work tree, so --against has no history to read",
            hint="run it in the worker's repository, or compare two files: crank compat OLD NEW",
            subject=str(path),
        )
    commit = git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    if commit.returncode != 0:
        raise UsageError(
            f"git ref {ref!r} does not name a commit in {folder}",
            hint="use a branch, tag or commit that exists (git fetch it first in CI)",
            subject=ref,
        )
    shown = git("show", f"{commit.stdout.strip()}:./{path.name}")
    if shown.returncode != 0:
        return None
    return shown.stdout
