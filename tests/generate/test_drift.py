"""`crank check`: drift is found, named by file and hunk, and fixed by --fix."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import yaml
from click.testing import CliRunner

from crank.cli import cli

if TYPE_CHECKING:
    from pathlib import Path


def test_fresh_scaffold_has_no_drift(pristine_worker: Path) -> None:
    result = CliRunner().invoke(cli, ["check", str(pristine_worker)])
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert result.stderr == "crank check: 1 project(s) match their manifests\n"


def test_edited_dockerfile_is_drift_named_by_file_and_hunk_and_fix_restores_it(
    worker_project: Path,
) -> None:
    dockerfile = worker_project / "Dockerfile"
    original = dockerfile.read_text()
    dockerfile.write_text(original.replace("EXPOSE 8080\n", "EXPOSE 9090\n"))
    line = original.splitlines().index("EXPOSE 8080") + 1

    result = CliRunner().invoke(cli, ["check", str(worker_project)])
    assert result.exit_code == 1
    where = f"{worker_project}/Dockerfile"
    assert result.stdout.splitlines()[:2] == [
        f"{where}:{line}: drift: Dockerfile differs from what 'dockerfile' renders from the "
        "manifest (1 hunk; edited by hand)",
        f"    @@ -{line - 2},5 +{line - 2},5 @@",
    ]
    assert "    -EXPOSE 9090\n    +EXPOSE 8080\n" in result.stdout
    assert result.stderr == (
        "crank check: 1 problem(s) in 1 project(s); run `crank check --fix` to re-render the "
        "artifacts\n"
    )

    fixed = CliRunner().invoke(cli, ["check", str(worker_project), "--fix"])
    assert fixed.exit_code == 0, fixed.output
    assert fixed.stdout == f"fixed {where}\n"
    assert dockerfile.read_text() == original
    assert CliRunner().invoke(cli, ["check", str(worker_project)]).exit_code == 0


def test_default_path_is_the_current_folder(worker_project: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    (worker_project / ".dockerignore").unlink()
    monkeypatch.chdir(worker_project)
    result = CliRunner().invoke(cli, ["check"])
    assert result.exit_code == 1
    assert result.stdout == ".dockerignore:1: missing: managed artifact 'dockerignore' is missing\n"


def test_json_format(worker_project: Path) -> None:
    (worker_project / "k8s" / "hpa.yaml").write_text("kind: nothing\n")
    result = CliRunner().invoke(cli, ["check", str(worker_project), "--format", "json"])
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["ok"] is False
    (project,) = report["projects"]
    assert project["manifest"] == "src/text_echo/crank.yaml"
    (finding,) = project["findings"]
    assert (finding["file"], finding["kind"], finding["artifact"]) == (
        "k8s/hpa.yaml",
        "drift",
        "k8s",
    )
    assert finding["hunks"][0].startswith("@@ -1 +1,")
    assert "-kind: nothing\n" in finding["hunks"][0]


def test_github_format_annotates(worker_project: Path) -> None:
    (worker_project / ".env.example").write_text("SECRET=x\n")
    result = CliRunner().invoke(cli, ["check", str(worker_project), "--format", "github"])
    assert result.exit_code == 1
    (line,) = result.stdout.splitlines()
    assert line.startswith(
        f"::error file={worker_project}/.env.example,line=1,title=crank check (drift)::"
        ".env.example differs from what 'env' renders from the manifest (1 hunk; it has no "
        "crank provenance stamp)%0A@@ -1 +1,"
    )
    assert "%0A-SECRET=x%0A" in line


def test_several_projects(worker_project: Path, pristine_worker: Path) -> None:
    (worker_project / "docker-compose.yml").unlink()
    result = CliRunner().invoke(cli, ["check", str(pristine_worker), str(worker_project)])
    assert result.exit_code == 1
    assert result.stdout == (
        f"{worker_project}/docker-compose.yml:1: missing: managed artifact 'compose' is missing\n"
    )
    assert "1 problem(s) in 2 project(s)" in result.stderr


def test_manifest_change_makes_every_artifact_stale(worker_project: Path) -> None:
    manifest = worker_project / "src" / "text_echo" / "crank.yaml"
    doc = yaml.safe_load(manifest.read_text())
    doc["dependencies"]["system"] = [{"name": "pandoc", "check": "exe:pandoc", "apt": "pandoc"}]
    manifest.write_text(yaml.safe_dump(doc, sort_keys=False))
    result = CliRunner().invoke(cli, ["check", str(worker_project), "--format", "json"])
    findings = json.loads(result.stdout)["projects"][0]["findings"]
    assert result.exit_code == 1
    drifted = {f["file"]: f["message"] for f in findings if f["kind"] == "drift"}
    assert len(drifted) == 10
    assert all(
        m.endswith("; the manifest changed since it was rendered)") for m in drifted.values()
    )
    semantic = [f["message"] for f in findings if f["kind"] == "semantic"]
    assert semantic == [
        "does not apt-get install 'pandoc', which the manifest needs for system dependency 'pandoc'"
    ]
    fixed = CliRunner().invoke(cli, ["check", str(worker_project), "--fix"])
    assert fixed.exit_code == 0, fixed.output
    assert (
        "apt-get install -y --no-install-recommends pandoc"
        in (worker_project / "Dockerfile").read_text()
    )


def test_semantic_checks_on_hand_edited_files(worker_project: Path) -> None:
    ci = worker_project / ".github" / "workflows" / "ci.yml"
    ci.write_text(ci.read_text().replace("python -m pytest -ra", "echo skipped"))
    deployment = worker_project / "k8s" / "deployment.yaml"
    deployment.write_text(
        deployment.read_text().replace('cpu: "500m"', 'cpu: "4"').replace("path: /ready", "path: /")
    )
    dockerfile = worker_project / "Dockerfile"
    dockerfile.write_text(dockerfile.read_text().replace("USER 10001:10001", "USER root"))
    result = CliRunner().invoke(cli, ["check", str(worker_project), "--format", "json"])
    findings = json.loads(result.stdout)["projects"][0]["findings"]
    semantic = sorted((f["file"], f["message"]) for f in findings if f["kind"] == "semantic")
    assert semantic == [
        (".github/workflows/ci.yml", "no step runs the tests (pytest)"),
        ("Dockerfile", "does not switch to a non-root USER"),
        (
            "k8s/deployment.yaml",
            "container 'worker' probes {'livenessProbe': '/health', 'readinessProbe': '/'}; "
            "expected liveness /health and readiness /ready",
        ),
        ("k8s/deployment.yaml", "container 'worker' requests cpu '4'; the manifest says '500m'"),
    ]


def test_code_and_manifest_capabilities_must_match(worker_project: Path) -> None:
    worker = worker_project / "src" / "text_echo" / "worker.py"
    worker.write_text(
        worker.read_text().replace(
            '@capability("text_echo.echo")', '@capability("text_echo.shout")'
        )
    )
    result = CliRunner().invoke(cli, ["check", str(worker_project), "--fix"])
    assert result.exit_code == 1
    assert result.stdout == (
        f"{worker_project}/src/text_echo/crank.yaml:1: semantic: declared but no @capability "
        "handler in the code: text_echo.echo\n"
        f"{worker_project}/src/text_echo/crank.yaml:1: semantic: handled in the code but not "
        "declared: text_echo.shout\n"
    )


def test_older_template_is_named(worker_project: Path) -> None:
    from crank.generate.templates import template_version

    service = worker_project / "k8s" / "service.yaml"
    service.write_text(
        service.read_text().replace(f"template={template_version()}", "template=0.9.0")
    )
    result = CliRunner().invoke(cli, ["check", str(worker_project)])
    assert result.exit_code == 1
    assert result.stdout.splitlines()[0] == (
        f"{worker_project}/k8s/service.yaml:1: drift: k8s/service.yaml differs from what 'k8s' "
        "renders from the manifest (1 hunk; rendered with template 0.9.0, "
        f"now {template_version()})"
    )


def test_check_of_a_folder_without_a_manifest(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["check", str(tmp_path)])
    assert result.exit_code == 2
    assert result.stderr == (
        f"error: {tmp_path}: no crank.yaml found (looked for src/*/crank.yaml, */crank.yaml, "
        "crank.yaml)\n"
        "  hint: run this in a worker project, or create one with `crank new-worker NAME`\n"
    )


def test_compose_must_wait_for_a_healthy_redis(worker_project: Path) -> None:
    compose = worker_project / "docker-compose.yml"
    compose.write_text(
        compose.read_text().replace("condition: service_healthy", "condition: service_started")
    )
    result = CliRunner().invoke(cli, ["check", str(worker_project), "--format", "json"])
    findings = json.loads(result.stdout)["projects"][0]["findings"]
    assert [(f["file"], f["message"]) for f in findings if f["kind"] == "semantic"] == [
        (
            "docker-compose.yml",
            "the worker does not wait for a healthy redis "
            "(depends_on: redis: condition: service_healthy)",
        )
    ]
