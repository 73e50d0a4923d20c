"""Generated artifacts pass the real tools: hadolint, check-jsonschema, docker-compose,
kubernetes-validate, pre-commit (and a vendored KEDA CRD schema subset)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow

DATA = Path(__file__).parent / "data"


def tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is not installed: pip install 'crank-workers[test]'"
    return path


def run(*argv: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        argv, capture_output=True, text=True, cwd=cwd, env=env, check=False, timeout=120
    )
    assert proc.returncode == 0, f"{argv} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(params=["cpu", "gpu"])
def project(request: pytest.FixtureRequest, pristine_worker: Path, gpu_worker: Path) -> Path:
    return pristine_worker if request.param == "cpu" else gpu_worker


def test_hadolint_finds_nothing(project: Path) -> None:
    out = run(tool("hadolint"), "-f", "json", str(project / "Dockerfile"))
    assert json.loads(out) == []


def test_hadolint_does_report_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install curl\n")
    proc = subprocess.run(
        [tool("hadolint"), "-f", "json", str(bad)], capture_output=True, text=True, check=False
    )
    codes = {finding["code"] for finding in json.loads(proc.stdout)}
    assert {"DL3007", "DL3008"} <= codes


def test_github_workflow_matches_the_schema(project: Path) -> None:
    run(
        tool("check-jsonschema"),
        "--builtin-schema",
        "vendor.github-workflows",
        str(project / ".github" / "workflows" / "ci.yml"),
    )


def test_compose_file_matches_the_schema(project: Path) -> None:
    run(
        tool("check-jsonschema"),
        "--builtin-schema",
        "vendor.compose-spec",
        str(project / "docker-compose.yml"),
    )


def test_docker_compose_config_accepts_it(project: Path) -> None:
    env = {**os.environ, "DOCKER_HOST": "unix:///nonexistent"}
    run(
        tool("docker-compose"),
        "-f",
        str(project / "docker-compose.yml"),
        "config",
        "-q",
        cwd=project,
        env=env,
    )


def test_kubernetes_manifests_validate_strictly(project: Path) -> None:
    files = [
        str(project / "k8s" / name) for name in ("deployment.yaml", "service.yaml", "hpa.yaml")
    ]
    out = run(tool("kubernetes-validate"), "--strict", *files)
    assert out.count(" passed for resource ") == 3


def test_keda_scaled_object_matches_the_vendored_crd_schema(project: Path) -> None:
    import jsonschema

    schema = json.loads((DATA / "keda-scaledobject.schema.json").read_text())
    doc = yaml.safe_load((project / "k8s" / "keda-scaledobject.yaml").read_text())
    jsonschema.validate(doc, schema)
    broken = json.loads(json.dumps(doc))
    del broken["spec"]["triggers"][0]["metadata"]["consumerGroup"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)


def test_pre_commit_config_is_valid(project: Path) -> None:
    run(tool("pre-commit"), "validate-config", str(project / ".pre-commit-config.yaml"))
