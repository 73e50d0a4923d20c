"""The blocks of README.md, docs/getting-started.md and docs/client.md, run as a reader
types them.

The install pages run in a fresh virtual environment with crank's wheel where a
package index would serve it (see conftest.py); docs/client.md runs its Python
programs in this environment, where crank and the example workers are installed.
The harness and its directives are described in harness.py.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from ..runtime.conftest import redis_server  # noqa: F401 - a fixture
from .conftest import REPO, checkout_copy, fresh_venv, reader_env
from .harness import PYTHON, SHELL_LANGUAGES, Block, Reader, parse_blocks

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]


def _run(reader: Reader, page: Path | list[Block]) -> None:
    blocks = page if isinstance(page, list) else parse_blocks(page.read_text(encoding="utf-8"))
    try:
        reader.run_page(blocks)
    finally:
        reader.stop_servers()


def test_readme(crank_wheelhouse: Path, tmp_path: Path) -> None:
    """Install crank and the example workers from a clone, serve them, call one."""
    clone = checkout_copy(tmp_path / "crank")
    venv = fresh_venv(tmp_path / "venv")
    reader = Reader(clone, reader_env(crank_wheelhouse, venv), "README.md")
    try:
        reader.run_page(parse_blocks((REPO / "README.md").read_text(encoding="utf-8")))
        # docs/examples.md: after the README's first command, the examples lint clean
        # (each is installed, not editable: its own installed copy is no clash)
        lint = subprocess.run(
            ["crank", "lint", "plugins/"],
            cwd=clone,
            env=reader.env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert (lint.returncode, lint.stdout) == (0, "4 files checked, no problems found\n"), (
            lint.stdout + lint.stderr
        )
    finally:
        reader.stop_servers()
    assert reader.transcript, "nothing ran"


@contextlib.contextmanager
def _image_tag_borrowed(tag: str, *, enabled: bool) -> Iterator[None]:
    """The page builds and runs ``tag``; an image the machine already had under that
    name is set aside first and given its name back after, so the test removes only
    what it built (``docker image rm`` of a tag removes the tag, not another's image)."""
    if not enabled:
        yield
        return

    def docker(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["docker", *args], capture_output=True, text=True, check=False)

    aside = f"crank-docs-test-kept/{tag.replace(':', '-')}:{uuid.uuid4().hex[:12]}"
    kept = docker("image", "tag", tag, aside).returncode == 0  # fails: no such image
    try:
        yield
    finally:
        docker("image", "rm", "-f", tag)  # the page's build (another tag keeps its image)
        if kept:
            docker("image", "tag", aside, tag)
            docker("image", "rm", aside)


def test_an_image_already_named_like_the_pages_is_given_its_name_back(
    docker_base_image: str | None,
) -> None:
    if docker_base_image is None:
        pytest.fail("this needs a Docker engine (scripts/setup-system.sh installs one)")

    def image_id(ref: str) -> str | None:
        done = subprocess.run(
            ["docker", "image", "inspect", "--format", "{{.Id}}", ref],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        return done.stdout.strip() if done.returncode == 0 else None

    tag = f"crank-docs-borrow-{uuid.uuid4().hex[:8]}:0.1.0"
    subprocess.run(["docker", "image", "tag", docker_base_image, tag], check=True)
    theirs = image_id(tag)
    try:
        with _image_tag_borrowed(tag, enabled=True):
            subprocess.run(
                ["docker", "build", "-q", "-t", tag, "-"],
                input=f"FROM {docker_base_image}\nLABEL crank.test={tag}\n",
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            built = image_id(tag)
            assert built is not None and built != theirs
        assert image_id(tag) == theirs  # the name is theirs again
        assert image_id(built) is None  # and what the page built is gone
    finally:
        subprocess.run(["docker", "image", "rm", tag], capture_output=True, check=False)


def test_getting_started(
    crank_wheelhouse: Path, tmp_path: Path, docker_base_image: str | None
) -> None:
    """Install, new worker, its tests and lint, serve and call it, build and run its image."""
    env = reader_env(crank_wheelhouse)
    missing = {}
    if docker_base_image is None:
        missing["docker"] = "no Docker engine here (CI runs it)"
    else:
        # no image registry is reachable: the documented setting names a local base
        env["CRANK_BASE_IMAGE"] = docker_base_image
    workdir = tmp_path / "reader"
    workdir.mkdir()
    reader = Reader(workdir, env, "docs/getting-started.md", missing=missing)
    with _image_tag_borrowed("demo:0.1.0", enabled=docker_base_image is not None):
        _run(reader, REPO / "docs" / "getting-started.md")
    transcript = "\n".join(reader.transcript)
    assert "$ crank new-worker demo" in transcript
    assert os.path.isdir(workdir / "demo" / "src" / "demo")
    # the page types the next steps `crank new-worker` prints, verbatim
    (tmp_path / "again").mkdir()
    again = subprocess.run(
        ["crank", "new-worker", "demo"],
        cwd=tmp_path / "again",
        env=reader.env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    printed = again.stdout.split("\nnext:\n", 1)[1]
    steps = itertools.takewhile(lambda line: line.startswith("  "), printed.splitlines())
    hint = [line.split("#")[0].strip() for line in steps]
    page = (REPO / "docs" / "getting-started.md").read_text(encoding="utf-8")
    assert hint and all(f"\n{step}\n" in page for step in hint), hint
    if docker_base_image is not None:
        # the image part ran, not skipped: built, served /health, as uid 10001
        assert "$ crank build ." in transcript, transcript
        assert "docker exec" in transcript, transcript


def test_client_page(redis_server: str, tmp_path: Path) -> None:  # noqa: F811 - the fixture
    """docs/client.md: serve the example workers on Redis, run each Python program, in
    order, and compare what it prints with the page."""
    env = reader_env(tmp_path / "no-wheelhouse", Path(sys.prefix))
    reader = Reader(tmp_path, env, "docs/client.md")
    reader.ports[6379] = int(redis_server.rsplit(":", 1)[1].split("/")[0])
    page = (REPO / "docs" / "client.md").read_text(encoding="utf-8")
    blocks = parse_blocks(page, SHELL_LANGUAGES | {PYTHON})
    _run(reader, blocks)
    ran = [line for line in reader.transcript if line.startswith("$ python")]
    assert len(ran) == sum(b.language == PYTHON for b in blocks) >= 5, reader.transcript


@pytest.mark.parametrize("page", ["capabilities.md", "runtime.md"])
def test_reference_pages(page: str, tmp_path: Path) -> None:
    """The shell blocks of docs/capabilities.md (self-tests, routes) and docs/runtime.md
    (serve the example workers, call one), run in a checkout where crank and the example
    workers are installed, print what the page shows."""
    clone = checkout_copy(tmp_path / "crank")
    env = reader_env(tmp_path / "no-wheelhouse", Path(sys.prefix))
    reader = Reader(clone, env, f"docs/{page}")
    _run(reader, REPO / "docs" / page)
    assert any(line.startswith("$ crank ") for line in reader.transcript), reader.transcript
