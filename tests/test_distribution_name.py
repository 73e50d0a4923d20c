"""Nothing tells a user to install the unrelated project the package index has as `crank`.

crank's distribution is `crank-workers`; the import package, the command and the
entry-point groups keep the name `crank`. These tests scan every text a user copies
from (docs, README, templates, the example workers, crank's own messages) and the
files a generated worker gets, for a requirement on the old distribution name.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import InvalidRequirement, Requirement

from crank import DISTRIBUTION
from crank.generate.scaffold import new_worker

ROOT = Path(__file__).resolve().parents[1]
OLD_NAME = "crank"

#: `crank` as a requirement with a version or extras: crank==1, crank>=0.2, crank[otel]
_PINNED = re.compile(r"(?<![\w.\-/])crank\s*(\[[\w,\s-]*\])?\s*(===|==|>=|<=|~=|!=|<|>)\s*\d")
#: a pip (or uv pip) install command line, up to the end of the line or a shell separator
_PIP_INSTALL = re.compile(r"\bpip\s+install\s+([^\n;&|#`)]*)")
_TEXT_SUFFIXES = {".md", ".toml", ".txt", ".py", ".yml", ".yaml", ".j2", ".json", ".cfg", ".sh"}


def old_name_mentions(text: str) -> list[str]:
    """Each place in ``text`` that requires the old distribution name, as the line's text."""
    found: list[str] = []
    for line in text.splitlines():
        if _PINNED.search(line):
            found.append(line.strip())
            continue
        for command in _PIP_INSTALL.finditer(line):
            try:
                words = shlex.split(command.group(1))
            except ValueError:  # an unbalanced quote in prose: fall back to whitespace
                words = command.group(1).split()
            if any(_requires_old_name(word) for word in words):
                found.append(line.strip())
                break
    return found


def _requires_old_name(word: str) -> bool:
    word = word.strip("'\"")
    if word.startswith("-") or "/" in word or word in {".", ".."}:
        return False  # an option, a path or the current folder
    try:
        return Requirement(word).name.lower() == OLD_NAME
    except InvalidRequirement:
        return False


def requirement_names(pyproject: Path) -> list[str]:
    """Every distribution a pyproject.toml depends on, optional extras included."""
    project = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project", {})
    requirements = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        requirements.extend(extra)
    return [Requirement(r).name.lower() for r in requirements]


@pytest.mark.parametrize(
    "text",
    [
        "pip install crank",
        "$ pip install crank            # or, from a checkout",
        "python -m pip install 'crank[otel]' ruff",
        "pip install -q crank==0.2.0",
        'dependencies = ["crank>=0.1"]',
        "RUN pip install --find-links /tmp/deps crank~=0.2",
        "pip install -U crank && crank run",
    ],
)
def test_the_detector_finds_the_old_name(text: str) -> None:
    assert old_name_mentions(text) == [text.strip()]


@pytest.mark.parametrize(
    "text",
    [
        "pip install crank-workers",
        "pip install 'crank-workers[otel]>=0.2'",
        "pip install . ./plugins/crank-* && crank run",
        "pip install -e plugins/crank-doc-converter",
        "pip install crank-fixture-absent",
        "crank run --port 8080",
        'ENTRY_POINT_GROUP = "crank"',
        "import crank  # the import package keeps its name",
    ],
)
def test_the_detector_leaves_the_new_name_and_the_command_alone(text: str) -> None:
    assert old_name_mentions(text) == []


def _files_users_copy_from() -> list[Path]:
    files = [ROOT / "README.md", ROOT / ".ci" / "run", ROOT / ".pre-commit-hooks.yaml"]
    for folder in ("docs", "templates", "plugins", "src", "scripts", "deployment"):
        for path in sorted((ROOT / folder).rglob("*")):
            hidden = [
                p for p in path.relative_to(ROOT).parts if p.startswith(".") and p != ".github"
            ]
            if not path.is_file() or hidden:
                continue
            if path.suffix in _TEXT_SUFFIXES or path.name in {"Dockerfile", "Containerfile"}:
                files.append(path)
    return files


def test_no_doc_template_or_message_names_the_old_distribution() -> None:
    files = _files_users_copy_from()
    assert len(files) > 50  # the scan really looked at the tree
    offenders = {
        str(path.relative_to(ROOT)): mentions
        for path in files
        if (mentions := old_name_mentions(path.read_text(encoding="utf-8", errors="replace")))
    }
    assert offenders == {}


def test_every_pyproject_depends_on_the_new_name() -> None:
    pyprojects = [ROOT / "pyproject.toml", *sorted(ROOT.glob("plugins/*/pyproject.toml"))]
    assert len(pyprojects) >= 5
    for pyproject in pyprojects:
        names = requirement_names(pyproject)
        assert OLD_NAME not in names, pyproject
    for plugin in sorted(ROOT.glob("plugins/*/pyproject.toml")):
        assert DISTRIBUTION in requirement_names(plugin), plugin


def test_a_generated_worker_requires_the_new_name(tmp_path: Path) -> None:
    project = new_worker("name-check", output_dir=tmp_path).target
    assert DISTRIBUTION in requirement_names(project / "pyproject.toml")
    offenders = {
        str(path.relative_to(project)): mentions
        for path in sorted(project.rglob("*"))
        if path.is_file()
        and (mentions := old_name_mentions(path.read_text(encoding="utf-8", errors="replace")))
    }
    assert offenders == {}
