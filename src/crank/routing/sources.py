"""Read the two sides of ``crank compat``: manifest files, or a file as of a git ref."""

from __future__ import annotations

import subprocess
from typing import TYPE_CHECKING

from crank.errors import UsageError
from crank.manifest.loader import load_document, parse_yaml
from crank.manifest.reading import manifest_from_document

if TYPE_CHECKING:
    from pathlib import Path

    from crank.manifest import LoadedDocument, Manifest


def manifest_from_text(
    text: str, label: str, path: Path | None = None
) -> tuple[Manifest, LoadedDocument]:
    """Parse and schema-validate manifest ``text``; ``label`` names it in messages."""
    doc = parse_yaml(text, label)
    return manifest_from_document(doc, path, hint=f"run `crank lint` on {label}"), doc


def manifest_from_file(path: Path | str) -> tuple[Manifest, LoadedDocument]:
    doc = load_document(path)
    hint = f"run `crank lint {path}` for every finding"
    return manifest_from_document(doc, path, hint=hint), doc


def read_at_ref(ref: str, path: Path, option: str = "--against") -> str | None:
    """The text of ``path`` as of git ``ref``, or None when the file did not exist then.

    Raises :class:`UsageError` when ``path`` is not in a git work tree or ``ref``
    does not name a commit; ``option`` is the one named there, which gave the ref.
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
            f"{option} needs git, which is not on PATH", hint="install git or compare two files"
        ) from None
    if inside.returncode != 0:
        raise UsageError(
            f"{path} is not inside a git work tree, so {option} has no history to read",
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
