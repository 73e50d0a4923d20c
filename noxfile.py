"""Developer and CI sessions. `nox -s ci` is what CI runs (see README)."""

from __future__ import annotations

import os
from pathlib import Path

import nox

nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.reuse_existing_virtualenvs = True

PYTHON = "3.11"
PLUGINS = sorted(str(p) for p in Path("plugins").glob("crank-*"))
#: Example plugins (not workers): installed for the tests, never by the README's first line.
EXAMPLES = sorted(str(p) for p in Path("examples").glob("crank-*"))
PYTHON_PATHS = ("src", "tests", "benchmarks", "plugins", "examples", "noxfile.py")
#: No block of code repeated across modules (the length is set in pyproject.toml).
DUPLICATE_CODE = ("pylint", "--disable=all", "--enable=duplicate-code", "src/crank")


def install_all(session: nox.Session) -> None:
    session.install("-e", ".[dev]", *[arg for p in [*PLUGINS, *EXAMPLES] for arg in ("-e", p)])


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff on the framework, its tests and the examples; no duplicated code in src/."""
    session.install("ruff>=0.5", "pylint>=3.2")
    session.run("ruff", "check", *PYTHON_PATHS)
    session.run("ruff", "format", "--check", *PYTHON_PATHS)
    session.run(*DUPLICATE_CODE)


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    """mypy --strict on src/."""
    install_all(session)
    session.run("mypy")


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The whole test suite except the Docker end-to-end path."""
    install_all(session)
    session.run("pytest", "-m", "not e2e", *session.posargs)


@nox.session(python=PYTHON)
def e2e(session: nox.Session) -> None:
    """Scaffold, build and run a worker image on a real Docker engine (needs root + docker.io)."""
    install_all(session)
    session.run("python", "scripts/e2e_docker.py", *session.posargs)


@nox.session(python=PYTHON)
def docs(session: nox.Session) -> None:
    """Regenerate the CLI and manifest references in docs/ (a test checks they are current)."""
    install_all(session)
    session.run("python", "scripts/gen_docs.py")


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Run the benchmarks and print their tables (peers come from the bench extra)."""
    session.install("-e", ".[dev,bench]", *[arg for p in PLUGINS for arg in ("-e", p)])
    for script in sorted(Path("benchmarks").glob("*.py")):
        session.run("python", str(script), *session.posargs)


@nox.session(python=PYTHON)
def ci(session: nox.Session) -> None:
    """Everything CI checks, in one environment: lint, types, docs drift, tests, e2e."""
    install_all(session)
    env = {"CI": os.environ.get("CI", "true")}
    session.run("ruff", "check", *PYTHON_PATHS)
    session.run("ruff", "format", "--check", *PYTHON_PATHS)
    session.run(*DUPLICATE_CODE)
    session.run("mypy")
    session.run("pytest", "-m", "not e2e", env=env)
    session.run("python", "scripts/e2e_docker.py", env=env)
