"""`crank build` up to the Docker engine: refusals with their exit codes, image labels,
OCI source metadata, the lock it needs and the wheels it stages.

The real build (a Docker engine, a local base image) is exercised by
scripts/e2e_docker.py, which CI runs after the tests.
"""

from __future__ import annotations

import gc
import http.server
import json
import os
import socketserver
import subprocess
import threading
import warnings
import zipfile
from typing import TYPE_CHECKING, Any

import pytest
from click.testing import CliRunner

from crank.cli import cli
from crank.errors import BuildFailed, DockerConnectionLost, ExitCode, GenerateError
from crank.generate.build import (
    DOCKER_API_VERSION,
    check_image_tag,
    ensure_buildable,
    image_labels,
    source_metadata,
    stream_build,
)
from crank.generate.project import load_project
from crank.generate.render import render_one
from crank.generate.staging import StagedWheels

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


def test_no_docker_engine_is_exit_3_with_a_hint(
    pristine_worker: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    result = CliRunner().invoke(cli, ["build", str(pristine_worker), "--quiet"])
    assert result.exit_code == 3
    first, hint = result.stderr.splitlines()
    assert first.startswith("error: no Docker engine answers at unix:///nonexistent/docker.sock (")
    assert hint == "  hint: start the Docker daemon (dockerd) or point DOCKER_HOST at a running one"
    assert not (pristine_worker / "crank-wheels").exists()
    assert not (pristine_worker / "requirements.lock").exists()


def test_the_default_tag_of_a_version_with_build_metadata_is_the_rendered_one(
    worker_project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """1.0.0+build.5 is tagged 1.0.0_build.5, the image docker-compose.yml runs."""
    manifest = worker_project / "src" / "text_echo" / "crank.yaml"
    manifest.write_text(manifest.read_text().replace("version: 0.1.0", "version: 1.0.0+build.5"))
    assert "image: text-echo:1.0.0_build.5\n" in (
        render_one("compose", load_project(worker_project))[0].content
    )
    assert CliRunner().invoke(cli, ["check", "--fix", str(worker_project)]).exit_code == 0
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    result = CliRunner().invoke(cli, ["build", str(worker_project), "--quiet"])
    # past the tag check (the version itself is no tag), on to asking Docker
    assert result.exit_code == 3, result.output
    assert result.stderr.startswith("error: no Docker engine answers at ")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--tag", "Bad Tag!"],
            "error: image tag 'Bad Tag!' is not a valid Docker image reference\n"
            "  hint: use NAME:TAG with a lower-case name (letters, digits, '.', '_', '-', '/') "
            "and a tag of letters, digits, '_', '.' and '-', e.g. --tag "
            "email-classifier:2.1.0\n",
        ),
        (
            ["--crank-wheel", "missing.whl"],
            "error: --crank-wheel missing.whl: no such file\n"
            "  hint: pass a crank_workers-*.whl, or leave --crank-wheel out to pack the running "
            "crank\n",
        ),
    ],
    ids=["tag", "crank-wheel"],
)
def test_a_typo_in_tag_or_wheel_is_reported_before_docker_is_asked(
    pristine_worker: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], message: str
) -> None:
    """Without a Docker engine, the typo used to hide behind "no Docker engine answers"."""
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    monkeypatch.chdir(pristine_worker)
    result = CliRunner().invoke(cli, ["build", ".", "--quiet", *args])
    assert (result.exit_code, result.stdout, result.stderr) == (2, "", message)
    assert not (pristine_worker / "crank-wheels").exists()
    assert not (pristine_worker / "requirements.lock").exists()


@pytest.mark.parametrize(
    "tag",
    [
        "email-classifier:2.1.0",
        "email-classifier",
        "localhost:5000/team/email_classifier:v2.1.0-rc.1",
        "registry.example.com/a/b__c:latest",
        "Registry.Example.com/a:1",
    ],
)
def test_docker_image_references_are_accepted(tag: str) -> None:
    check_image_tag(tag)


@pytest.mark.parametrize(
    "tag",
    [
        "Email:1",
        "email:2.1.0+build.5",
        "email:",
        "email:-1",
        "email@sha256:abc",
        "a/" * 130 + "b",
        "email:" + "1" * 129,
        "",
    ],
)
def test_invalid_image_references_are_refused(tag: str) -> None:
    with pytest.raises(GenerateError, match="is not a valid Docker image reference"):
        check_image_tag(tag)


def test_project_without_dockerfile(worker_project: Path) -> None:
    (worker_project / "Dockerfile").unlink()
    result = CliRunner().invoke(cli, ["build", str(worker_project)])
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {worker_project}: no Dockerfile\n")


def test_a_dockerfile_crank_did_not_render_is_refused(worker_project: Path) -> None:
    """An older template's Dockerfile would not install the wheels crank build stages."""
    dockerfile = worker_project / "Dockerfile"
    dockerfile.write_text(dockerfile.read_text().replace("--require-hashes", ""))
    result = CliRunner().invoke(cli, ["build", str(worker_project)])
    assert result.exit_code == 2
    assert result.stderr == (
        f"error: {worker_project}: Dockerfile differs from what this crank renders from the "
        "manifest\n"
        "  hint: run `crank check --fix`: crank build stages the wheels the current Dockerfile "
        "installs\n"
    )


def test_locked_build_refuses_a_missing_or_stale_lock(worker_project: Path) -> None:
    from .test_lock import fake_lock

    project = load_project(worker_project)
    with pytest.raises(GenerateError, match=r"requirements\.lock is missing: the image") as info:
        ensure_buildable(project, locked=True, progress=None)
    assert info.value.hint == (
        "run `crank lock` and commit requirements.lock (or build without --locked)"
    )
    fake_lock(worker_project, **{"dumb-init": "1.0"})
    with pytest.raises(GenerateError, match=r"is stale: dumb-init>=1\.2\.5 is locked at 1\.0\n"):
        ensure_buildable(project, locked=True, progress=None)
    fake_lock(worker_project)
    ensure_buildable(project, locked=True, progress=None)  # current: nothing to do


def test_labels_carry_manifest_digest_capabilities_and_crank_version(pristine_worker: Path) -> None:
    import crank

    project = load_project(pristine_worker)
    labels = image_labels(project)
    assert labels["crank.manifest.digest"] == project.manifest.digest()
    assert labels["crank.capabilities"] == "text_echo.echo"
    assert labels["crank.version"] == crank.__version__
    assert labels["org.opencontainers.image.title"] == "text-echo"
    assert labels["org.opencontainers.image.version"] == "0.1.0"
    assert labels["org.opencontainers.image.licenses"] == "MIT"


def test_source_metadata_from_git_without_credentials(worker_project: Path) -> None:
    project = load_project(worker_project)
    assert source_metadata(project) == {
        "IMAGE_SOURCE": "",
        "IMAGE_REVISION": "",
        "IMAGE_CREATED": "",
    }

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(worker_project), *args],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()

    git("init", "-q")
    git("remote", "add", "origin", "https://user:s3cret@github.com/acme/text-echo.git")
    git("add", ".")
    git("-c", "user.email=t@example.invalid", "-c", "user.name=t", "commit", "-q", "-m", "one")
    meta = source_metadata(project)
    assert meta["IMAGE_SOURCE"] == "https://github.com/acme/text-echo"
    assert meta["IMAGE_REVISION"] == git("rev-parse", "HEAD")
    assert meta["IMAGE_CREATED"] == git("log", "-1", "--format=%cI")
    git("remote", "set-url", "origin", "git@github.com:acme/text-echo.git")
    assert source_metadata(project)["IMAGE_SOURCE"] == "https://github.com/acme/text-echo"


def test_staging_refuses_a_leftover_wheels_folder(worker_project: Path) -> None:
    (worker_project / "crank-wheels").mkdir()
    (worker_project / "crank-wheels" / "mine.whl").write_text("x")
    with (
        pytest.raises(GenerateError, match=r"crank-wheels already exists") as info,
        StagedWheels(load_project(worker_project), machine="x86_64"),
    ):
        pass
    assert info.value.hint == ("crank build fills crank-wheels/ itself: remove it and build again")
    assert (worker_project / "crank-wheels" / "mine.whl").read_text() == "x"


def test_crank_wheel_argument_must_be_a_wheel(worker_project: Path, tmp_path: Path) -> None:
    not_wheel = tmp_path / "crank.tar.gz"
    not_wheel.write_text("x")
    with (
        pytest.raises(GenerateError, match="not a wheel file"),
        StagedWheels(load_project(worker_project), machine="x86_64", crank_wheel=not_wheel),
    ):
        pass
    assert not (worker_project / "crank-wheels").exists()


@pytest.mark.slow
def test_staged_wheels_are_the_lock_crank_and_the_worker_then_removed(
    worker_project: Path,
) -> None:
    """Needs the package index (uv and pip read it), as `crank build` does."""
    import hashlib

    from crank.generate.lock import parse_lock, write_lock

    project = load_project(worker_project)
    lock = write_lock(project)
    locked = parse_lock(lock.read_text())
    hashes = {h for r in locked for h in r.hashes}
    seen: list[str] = []
    with StagedWheels(project, machine="x86_64", progress=seen.append) as staged:
        deps = sorted((staged.dir / "deps").glob("*.whl"))
        crank_wheels = list((staged.dir / "crank").glob("*.whl"))
        worker_wheels = list((staged.dir / "worker").glob("*.whl"))
        assert [w.name.split("-")[0] for w in crank_wheels] == ["crank_workers"]
        assert [w.name for w in worker_wheels] == ["text_echo-0.1.0-py3-none-any.whl"]
        with zipfile.ZipFile(worker_wheels[0]) as wheel:
            assert "text_echo/crank.yaml" in wheel.namelist()
        for wheel_path in deps:
            digest = "sha256:" + hashlib.sha256(wheel_path.read_bytes()).hexdigest()
            assert digest in hashes, wheel_path.name  # every file is a locked one
        names = {w.name.split("-")[0].lower().replace("_", "-") for w in deps}
        assert {"pyyaml", "dumb-init", "click"} <= names
        # binary packages come for every supported Python
        assert {w.name.split("-")[2] for w in deps if w.name.startswith("pyyaml-")} == {
            "cp311",
            "cp312",
            "cp313",
        }
    assert not (worker_project / "crank-wheels").exists()
    assert seen[0] == "staging this crank's wheel"


class _EngineThatDropsTheBuild(http.server.BaseHTTPRequestHandler):
    """Answers like a Docker engine, then cuts its build output off mid-line (an engine
    that stops or restarts while building): a real engine cannot be made to do it."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        return

    def do_GET(self) -> None:
        body = json.dumps({"ApiVersion": DOCKER_API_VERSION, "Architecture": "x86_64"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        if self.headers.get("Transfer-Encoding") == "chunked":
            while size := int(self.rfile.readline().strip(), 16):
                self.rfile.read(size + 2)
            self.rfile.readline()
        else:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        step = b'{"stream":"Step 1/9 : FROM python:3.11-slim\\n"}\r\n'
        self.wfile.write(b"%x\r\n%s\r\n" % (len(step), step))
        self.wfile.write(b'40\r\n{"stream":"Ste')  # 64 bytes announced, 14 sent
        self.wfile.flush()
        self.close_connection = True


class _UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def get_request(self) -> tuple[Any, Any]:
        conn, _ = super().get_request()
        return conn, ("engine", 0)  # BaseHTTPRequestHandler wants an address pair


@pytest.fixture
def dropping_engine(tmp_path: Path) -> Iterator[str]:
    path = str(tmp_path / "engine.sock")
    server = _UnixServer(path, _EngineThatDropsTheBuild)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"unix://{path}"
    finally:
        server.shutdown()
        server.server_close()
        os.unlink(path)


def _context(tmp_path: Path) -> Path:
    context = tmp_path / "context"
    context.mkdir()
    (context / "Dockerfile").write_text("FROM python:3.11-slim\n")
    return context


def _failed_build(base_url: str, context: Path, printed: list[str] | None = None) -> BuildFailed:
    """What ``stream_build`` of ``context`` (as demo:0.1.0) against the engine at
    ``base_url`` raised; the caller lets it go with :func:`_let_go`."""
    import docker

    client = docker.DockerClient(base_url=base_url, version=DOCKER_API_VERSION)
    try:
        with pytest.raises(BuildFailed) as failed:
            stream_build(
                client,
                path=str(context),
                tag="demo:0.1.0",
                labels={},
                buildargs={},
                base="python:3.11-slim",
                progress=None if printed is None else printed.append,
            )
    finally:
        client.close()
    return failed.value


def _let_go() -> None:
    """docker-py leaves the build context's temporary file open when a build fails
    before it ends (7.0 even when the stream breaks), and a failure's context keeps the
    frame holding it: once the test dropped the error, it is collected here rather than
    in whichever test runs next."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


def test_an_engine_connection_that_breaks_mid_build_is_a_build_failure(
    dropping_engine: str, tmp_path: Path
) -> None:
    printed: list[str] = []
    error = _failed_build(dropping_engine, _context(tmp_path), printed)
    assert isinstance(error, DockerConnectionLost)
    assert error.exit_code == ExitCode.UNAVAILABLE  # the engine went away: not the build's fault
    assert str(error).startswith(
        "building demo:0.1.0 failed: the connection to the Docker engine broke ("
    )
    assert error.hint is not None and "docker info" in error.hint
    # what it printed before the break stays with the error (docker-py 7.0 reads ahead
    # and meets the break before it hands out the first line; later releases do not)
    assert printed in ([], ["Step 1/9 : FROM python:3.11-slim"])
    assert error.log == tuple(printed)
    del error
    _let_go()


def test_a_build_context_file_that_cannot_be_read_is_named(tmp_path: Path) -> None:
    """docker-py reads the context into a tar before it connects; a file it cannot read
    fails the build with the file's name (exit 4), not as a lost engine (exit 3).

    The tests run as root, who can read any file; a path longer than the system allows
    (PATH_MAX, 4,096 bytes) cannot be opened by anyone, so that is the unreadable file:
    a folder whose path is just short enough to be listed, holding a long-named file."""
    context = _context(tmp_path)
    deep = context
    while len(str(deep)) < 3_900:
        deep = deep / ("d" * min(200, 3_950 - len(str(deep))))
        deep.mkdir()
    long_name = "f" * 250
    folder = os.open(deep, os.O_RDONLY)
    try:
        os.close(os.open(long_name, os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=folder))
    finally:
        os.close(folder)
    assert len(str(deep / long_name)) > 4_096
    # no engine behind this address: the context fails before anything connects
    error = _failed_build(f"unix://{tmp_path / 'no-engine.sock'}", context)
    assert not isinstance(error, DockerConnectionLost)
    assert error.exit_code == ExitCode.FAILED
    assert str(error).startswith(
        f"building demo:0.1.0 failed: cannot read {deep / long_name} in the build context "
        "(File name too long)"
    )
    assert error.hint is not None and ".dockerignore" in error.hint
    del error
    _let_go()
