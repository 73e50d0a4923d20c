"""`crank build` without a Docker engine, image labels, and the crank wheel it ships.

The real build (a Docker engine, a local base image) is exercised by
scripts/e2e_docker.py, which CI runs after the tests.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from click.testing import CliRunner

from crank.cli import cli
from crank.generate.build import _StagedWheel, image_labels
from crank.generate.project import load_project

if TYPE_CHECKING:
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


def test_project_without_dockerfile(worker_project: Path) -> None:
    (worker_project / "Dockerfile").unlink()
    result = CliRunner().invoke(cli, ["build", str(worker_project)])
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {worker_project}: no Dockerfile\n")


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


def test_staged_wheel_is_removed_after_the_build(worker_project: Path, tmp_path: Path) -> None:
    wheel = tmp_path / "crank_workers-0.2.0-py3-none-any.whl"
    wheel.write_bytes(b"not really a wheel")
    project = load_project(worker_project)
    with _StagedWheel(project, wheel) as placed:
        assert placed == worker_project / "crank-wheels" / wheel.name
        assert placed.read_bytes() == b"not really a wheel"
    assert not (worker_project / "crank-wheels").exists()
    # a folder the user keeps is kept, with only crank's wheel removed
    (worker_project / "crank-wheels").mkdir()
    (worker_project / "crank-wheels" / "other.whl").write_text("x")
    with _StagedWheel(project, wheel):
        pass
    assert sorted(p.name for p in (worker_project / "crank-wheels").iterdir()) == ["other.whl"]


def test_crank_wheel_argument_must_be_a_wheel(worker_project: Path, tmp_path: Path) -> None:
    from crank.errors import GenerateError

    not_wheel = tmp_path / "crank.tar.gz"
    not_wheel.write_text("x")
    with (
        pytest.raises(GenerateError, match="not a wheel file"),
        _StagedWheel(load_project(worker_project), not_wheel),
    ):
        pass
