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


def install_all(session: nox.Session, *options: str) -> None:
    session.install(
        *options, "-e", ".[dev]", *[arg for p in [*PLUGINS, *EXAMPLES] for arg in ("-e", p)]
    )


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
def minimums(session: nox.Session) -> None:
    """The test suite on the lowest versions pyproject.toml allows: a minimum pin is a claim.

    uv resolves every direct requirement (crank's, its test extra's and the examples')
    to the lowest version the specifiers allow, and everything below them to the newest
    that fits, which is what a user with an old pin elsewhere gets.
    """
    session.install("uv>=0.4")
    python = str(Path(session.virtualenv.location) / "bin" / "python")
    editables = [arg for p in [*PLUGINS, *EXAMPLES] for arg in ("-e", p)]
    session.run(
        "uv", "pip", "install", "--python", python, "--resolution", "lowest-direct",
        "-e", ".[dev]", *editables,
    )  # fmt: skip
    session.run("uv", "pip", "list", "--python", python)
    # tests/docs install crank into fresh environments of their own, whatever this
    # session's versions are: the ci session runs them. Two processes (one a core on the
    # 2-core CI machine) keep CI's total time down; arguments replace them.
    options = session.posargs or ["-n", "2"]
    session.run("pytest", "-m", "not e2e", "--ignore=tests/docs", *options, env=_ci_env())


def _ci_env() -> dict[str, str]:
    return {"CI": os.environ.get("CI", "true")}


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
    """Run the benchmarks and print their tables (peers come from the bench extra; arq's
    row of the queue benchmark from ``bench_arq``)."""
    session.install("-e", ".[dev,bench]", *[arg for p in PLUGINS for arg in ("-e", p)])
    for script in sorted(Path("benchmarks").glob("*.py")):
        session.run("python", str(script), *session.posargs)


@nox.session(python=PYTHON)
def bench_arq(session: nox.Session) -> None:
    """The queue benchmark's arq row, next to crank-redis: arq declares redis<6, which
    Celery's Redis transport does not accept, so it has an environment of its own."""
    session.install("-e", ".[bench-arq]")
    session.run("python", "benchmarks/queue.py", "--systems", "crank-redis,arq", *session.posargs)


@nox.session(python=PYTHON)
def ci(session: nox.Session) -> None:
    """Everything CI checks: lint, types, docs drift, tests (the newest dependencies a
    newcomer gets today), e2e; then ``minimums`` (the oldest versions pyproject allows)."""
    # the newest versions, as a newcomer gets them today, even in a reused environment
    install_all(session, "--upgrade", "--upgrade-strategy", "eager")
    env = {"CI": os.environ.get("CI", "true")}
    session.run("ruff", "check", *PYTHON_PATHS)
    session.run("ruff", "format", "--check", *PYTHON_PATHS)
    session.run(*DUPLICATE_CODE)
    session.run("mypy")
    session.run("pytest", "-m", "not e2e", env=env)
    session.run("python", "scripts/e2e_docker.py", env=env)
    # then the same suite on the minimum versions, in an environment of its own
    session.notify("minimums")
