"""Where crank's templates live and the Jinja environment that renders artifacts.

In a wheel the templates are shipped as ``crank/_templates``; in an editable
install (a source checkout) they are ``<repo>/templates``.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING

from crank.errors import GenerateError

if TYPE_CHECKING:
    import jinja2

_PACKAGE_DIR = Path(__file__).resolve().parent.parent


def templates_dir() -> Path:
    """The folder holding ``worker/`` (cookiecutter) and ``artifacts/`` (Jinja)."""
    for candidate in (_PACKAGE_DIR / "_templates", _PACKAGE_DIR.parent.parent / "templates"):
        if (candidate / "worker" / "cookiecutter.json").is_file():
            return candidate
    raise GenerateError(
        "crank's templates are missing from this installation",
        hint=(
            "reinstall crank (pip install --force-reinstall crank-workers) "
            "or run from a source checkout"
        ),
        subject=str(_PACKAGE_DIR),
    )


def worker_template() -> Path:
    """The cookiecutter template of a worker package."""
    return templates_dir() / "worker"


@functools.cache
def template_version() -> str:
    """Version of the artifact templates, written into every provenance stamp."""
    return (templates_dir() / "artifacts" / "VERSION").read_text(encoding="utf-8").strip()


@functools.cache
def artifact_environment() -> jinja2.Environment:
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir() / "artifacts")),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,  # noqa: S701 - renders YAML and Dockerfiles, never HTML
    )
