"""`crank services`, a command added by the plugin."""

from __future__ import annotations

import shutil
from typing import TYPE_CHECKING

from .conftest import crank, declare_services

if TYPE_CHECKING:
    from pathlib import Path


def test_the_command_is_listed_by_crank_help() -> None:
    assert "  services     Check the HTTP services the workers declare." in crank("--help").stdout


def test_every_declared_service_is_checked(
    scaffolded: Path, tmp_path: Path, service: str, closed_port: int
) -> None:
    project = shutil.copytree(scaffolded, tmp_path / "w")
    down = f"http://127.0.0.1:{closed_port}/"
    manifest = declare_services(
        project,
        f"{{name: search, check: '{service}/health', hint: start it}}",
        f"{{name: extra, check: '{down}', hint: start it, optional: true}}",
    )
    result = crank("services", str(manifest))
    assert result.returncode == 0, result.stderr  # only an optional one is down
    lines = result.stdout.splitlines()
    assert lines[0].split()[:3] == ["search-demo", "search", "up"]
    assert lines[1].split()[:4] == ["search-demo", "extra", "(optional)", "down"]
    assert lines[-1] == "2 services: 1 up, 1 not (0 required)"


def test_a_required_service_down_is_a_finding(
    scaffolded: Path, tmp_path: Path, closed_port: int
) -> None:
    project = shutil.copytree(scaffolded, tmp_path / "w")
    manifest = declare_services(
        project, f"{{name: search, check: 'http://127.0.0.1:{closed_port}/', hint: start it}}"
    )
    result = crank("services", str(manifest))
    assert result.returncode == 1
    assert result.stdout.splitlines()[-1] == "1 service: 0 up, 1 not (1 required)"


def test_a_worker_without_services(scaffolded: Path) -> None:
    manifest = next(scaffolded.glob("src/*/crank.yaml"))
    result = crank("services", str(manifest))
    assert (result.returncode, result.stdout) == (0, "no worker declares an HTTP service\n")
