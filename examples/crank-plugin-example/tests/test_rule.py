"""EXA001 through `crank lint`, as a user runs it."""

from __future__ import annotations

import json
import shutil
from typing import TYPE_CHECKING

from .conftest import crank, declare_services

if TYPE_CHECKING:
    from pathlib import Path


def test_a_service_without_a_hint_is_a_warning(scaffolded: Path, tmp_path: Path) -> None:
    project = shutil.copytree(scaffolded, tmp_path / "w")
    manifest = declare_services(
        project,
        "{name: search, check: 'http://127.0.0.1:9200/health'}",
        "{name: cache, check: 'http://127.0.0.1:6380/', hint: docker compose up -d cache}",
    )
    result = crank("lint", "--format", "json", str(manifest))
    assert result.returncode == 0, result.stdout  # a warning alone does not fail
    findings = [f for f in json.loads(result.stdout)["findings"] if f["rule"] == "EXA001"]
    assert [(f["severity"], f["json_path"], f["line"]) for f in findings] == [
        ("warning", "$.dependencies.system[0]", 22)
    ]
    assert findings[0]["message"] == (
        "service 'search' is checked at http://127.0.0.1:9200/health but has no hint: "
        "a test that skips on it cannot say how to start it"
    )
    strict = crank("lint", "--strict", str(manifest))
    assert strict.returncode == 1
    assert "EXA001" in strict.stdout


def test_the_rule_can_be_turned_off_per_file(scaffolded: Path, tmp_path: Path) -> None:
    project = shutil.copytree(scaffolded, tmp_path / "w")
    manifest = declare_services(project, "{name: search, check: 'https://search.internal/'}")
    manifest.write_text(manifest.read_text() + "# crank-lint: disable=EXA001\n")
    result = crank("lint", "--strict", str(manifest))
    assert result.returncode == 0, result.stdout
