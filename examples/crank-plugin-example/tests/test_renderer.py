"""wait-for-services: rendered from the manifest, checked by `crank check`, and run."""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import TYPE_CHECKING

from .conftest import crank, declare_services

if TYPE_CHECKING:
    from pathlib import Path

SCRIPT = "deployment/wait-for-services.sh"


def test_no_service_no_file(scaffolded: Path) -> None:
    result = crank("render", "wait-for-services", "--project", str(scaffolded))
    assert result.returncode == 2
    assert result.stderr.startswith(
        "error: renderer 'wait-for-services' renders no file for worker search-demo"
    )
    assert not (scaffolded / SCRIPT).exists()
    assert crank("check", str(scaffolded)).returncode == 0  # nothing expected


def test_check_expects_the_script_and_fix_writes_it(
    scaffolded: Path, tmp_path: Path, service: str
) -> None:
    project = shutil.copytree(scaffolded, tmp_path / "w")
    declare_services(project, f"{{name: search, check: '{service}/health', hint: start it}}")
    missing = crank("check", str(project))
    assert missing.returncode == 1
    assert f"{SCRIPT}:1: missing: managed artifact 'wait-for-services' is missing" in (
        missing.stdout
    )
    assert crank("check", "--fix", str(project)).returncode == 0
    assert crank("check", str(project)).returncode == 0
    rendered = crank("render", "wait-for-services", "--project", str(project))
    assert rendered.stdout == (project / SCRIPT).read_text()
    assert f"wait_for search {service}/health required\n" in rendered.stdout


def run_script(project: Path, wait_s: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", str(project / SCRIPT), "echo", "worker started"],
        capture_output=True,
        text=True,
        env={**os.environ, "CRANK_WAIT_S": wait_s},
        timeout=120,
        check=False,
    )


def test_the_script_starts_the_worker_once_the_services_answer(
    scaffolded: Path, tmp_path: Path, service: str, closed_port: int
) -> None:
    project = shutil.copytree(scaffolded, tmp_path / "w")
    down = f"http://127.0.0.1:{closed_port}/"
    declare_services(
        project,
        f"{{name: search, check: '{service}/health', hint: start it}}",
        f"{{name: extra, check: '{down}', hint: start it, optional: true}}",
    )
    assert crank("check", "--fix", str(project)).returncode == 0
    result = run_script(project, "1")
    assert (result.returncode, result.stdout) == (0, "worker started\n")
    assert result.stderr == (
        "wait-for-services: search is up\n"
        f"wait-for-services: optional extra ({down}) is not up; going on\n"
    )


def test_the_script_refuses_to_start_without_a_required_service(
    scaffolded: Path, tmp_path: Path, closed_port: int
) -> None:
    project = shutil.copytree(scaffolded, tmp_path / "w")
    down = f"http://127.0.0.1:{closed_port}/"
    declare_services(project, f"{{name: search, check: '{down}', hint: start it}}")
    assert crank("check", "--fix", str(project)).returncode == 0
    result = run_script(project, "0")
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == f"wait-for-services: search ({down}) did not answer in 0s\n"
