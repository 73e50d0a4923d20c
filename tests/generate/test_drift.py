"""`crank check`: drift is found, named by file and hunk, and fixed by --fix."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

import yaml
from click.testing import CliRunner

from crank.cli import cli

from ..permissions import crank_unprivileged

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
    (worker_project / "k8s" / "overlays" / "hpa" / "hpa.yaml").write_text("kind: nothing\n")
    result = CliRunner().invoke(cli, ["check", str(worker_project), "--format", "json"])
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["ok"] is False
    (project,) = report["projects"]
    assert project["manifest"] == "src/text_echo/crank.yaml"
    (finding,) = project["findings"]
    assert (finding["file"], finding["kind"], finding["artifact"]) == (
        "k8s/overlays/hpa/hpa.yaml",
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


def rendered_files(project_dir: Path) -> dict[str, str]:
    from crank.generate.project import load_project
    from crank.generate.render import render_all

    return {f.path: f.content for f in render_all(load_project(project_dir))}


def test_manifest_change_reports_only_the_artifacts_it_changes(worker_project: Path) -> None:
    before = rendered_files(worker_project)
    manifest = worker_project / "src" / "text_echo" / "crank.yaml"
    doc = yaml.safe_load(manifest.read_text())
    doc["dependencies"]["system"] = [{"name": "pandoc", "check": "exe:pandoc", "apt": "pandoc"}]
    manifest.write_text(yaml.safe_dump(doc, sort_keys=False))
    after = rendered_files(worker_project)
    changed = {path for path in after if after[path] != before[path]}
    assert "Dockerfile" in changed
    assert "k8s/base/service.yaml" not in changed and ".dockerignore" not in changed

    result = CliRunner().invoke(cli, ["check", str(worker_project), "--format", "json"])
    findings = json.loads(result.stdout)["projects"][0]["findings"]
    assert result.exit_code == 1
    drifted = {f["file"]: f["message"] for f in findings if f["kind"] == "drift"}
    assert set(drifted) == changed
    assert all(
        m.endswith("; the manifest (or crank) changed since it was rendered)")
        for m in drifted.values()
    )
    semantic = [f["message"] for f in findings if f["kind"] == "semantic"]
    assert semantic == [
        "does not apt-get install 'pandoc', which the manifest needs for system dependency 'pandoc'"
    ]
    fixed = CliRunner().invoke(cli, ["check", str(worker_project), "--fix"])
    assert fixed.exit_code == 0, fixed.output
    assert fixed.stdout == "".join(f"fixed {worker_project}/{p}\n" for p in sorted(changed))
    assert (
        "apt-get install -y --no-install-recommends pandoc"
        in (worker_project / "Dockerfile").read_text()
    )


def test_a_stamp_without_its_content_digest_claims_no_reason_it_cannot_know(
    worker_project: Path,
) -> None:
    """Only the digest tells a hand edit from a manifest change; without it, none is named."""
    env_example = worker_project / ".env.example"
    text = env_example.read_text()
    env_example.write_text(re.sub(r" content=[0-9a-f]{16}", "", text, count=1) + "EXTRA=1\n")
    result = CliRunner().invoke(cli, ["check", str(worker_project)])
    assert result.exit_code == 1
    first = result.stdout.splitlines()[0]
    assert first == (
        f"{worker_project}/.env.example:1: drift: .env.example differs from what 'env' renders "
        "from the manifest (2 hunks; its stamp has no content digest to tell whether it was "
        "edited)"
    )


def test_a_scaling_change_drifts_only_the_autoscaler_files(worker_project: Path) -> None:
    manifest = worker_project / "src" / "text_echo" / "crank.yaml"
    manifest.write_text(manifest.read_text().replace("max_workers: 4", "max_workers: 6"))
    result = CliRunner().invoke(cli, ["check", str(worker_project), "--format", "json"])
    assert result.exit_code == 1
    findings = json.loads(result.stdout)["projects"][0]["findings"]
    assert sorted(f["file"] for f in findings) == [
        "k8s/overlays/hpa/hpa.yaml",
        "k8s/overlays/keda/scaledobject.yaml",
    ]


def test_semantic_checks_on_hand_edited_files(worker_project: Path) -> None:
    ci = worker_project / ".github" / "workflows" / "ci.yml"
    ci.write_text(ci.read_text().replace("python -m pytest -ra", "echo skipped"))
    deployment = worker_project / "k8s" / "base" / "deployment.yaml"
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
            "k8s/base/deployment.yaml",
            "container 'worker' probes {'livenessProbe': '/health', 'readinessProbe': '/'}; "
            "expected liveness /health and readiness /ready",
        ),
        (
            "k8s/base/deployment.yaml",
            "container 'worker' requests cpu '4'; the manifest says '500m'",
        ),
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
    # what --fix leaves it cannot fix: advising --fix again sent users round in circles
    assert result.stderr == (
        "crank check: 2 problem(s) in 1 project(s); --fix cannot fix these: edit the file or "
        "the manifest a semantic finding names until they agree (`crank lock` renews a stale "
        "requirements.lock)\n"
    )


def test_older_template_is_named(worker_project: Path) -> None:
    from crank.generate.templates import template_version

    service = worker_project / "k8s" / "base" / "service.yaml"
    service.write_text(
        service.read_text().replace(f"template={template_version()}", "template=0.9.0")
    )
    result = CliRunner().invoke(cli, ["check", str(worker_project)])
    assert result.exit_code == 1
    assert result.stdout.splitlines()[0] == (
        f"{worker_project}/k8s/base/service.yaml:1: drift: k8s/base/service.yaml differs from "
        "what 'k8s' "
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


def test_a_parent_folder_never_adopts_a_nested_project(worker_project: Path) -> None:
    """Pointed at the folder that holds a project, crank refuses instead of treating the
    child's manifest as its own (and --fix writes nothing there)."""
    parent = worker_project.parent
    flat = parent / "flat"  # a project with its crank.yaml at the top: flat/crank.yaml
    flat.mkdir()
    (flat / "pyproject.toml").write_text("[project]\nname = 'flat'\n")
    (flat / "crank.yaml").write_text("apiVersion: crank.dev/v1\n")
    before = sorted(p.name for p in parent.iterdir())
    for args in (["check", str(flat.parent)], ["check", str(flat.parent), "--fix"]):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 2
        assert result.stderr == (
            f"error: {parent}: not a worker project: flat/ is a worker project of its own "
            "(it has a pyproject.toml)\n"
            "  hint: point crank at the worker project's own folder (the one holding its "
            "pyproject.toml), e.g. `crank check plugins/*`\n"
        )
    assert sorted(p.name for p in parent.iterdir()) == before


def test_a_manifest_in_a_sub_folder_needs_the_project_pyproject(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "crank.yaml").write_text("apiVersion: crank.dev/v1\n")
    result = CliRunner().invoke(cli, ["check", str(tmp_path)])
    assert result.exit_code == 2
    assert result.stderr.startswith(
        f"error: {tmp_path}: not a worker project: pkg/crank.yaml is in a sub-folder and "
        f"{tmp_path} has no pyproject.toml\n"
    )


def test_a_file_crank_no_longer_renders_is_an_orphan_and_fix_removes_it(
    worker_project: Path,
) -> None:
    manifest = worker_project / "src" / "text_echo" / "crank.yaml"
    manifest.write_text(manifest.read_text().replace("gpu: none", "gpu: required"))
    hand_written = worker_project / "k8s" / "overlays" / "mine.yaml"
    hand_written.write_text("kind: ConfigMap\n")  # no crank stamp: never touched
    result = CliRunner().invoke(cli, ["check", str(worker_project), "--format", "json"])
    assert result.exit_code == 1
    findings = json.loads(result.stdout)["projects"][0]["findings"]
    orphans = sorted((f["file"], f["message"]) for f in findings if f["kind"] == "orphan")
    assert orphans == [
        (
            f"k8s/overlays/hpa/{name}",
            f"k8s/overlays/hpa/{name} was generated by crank (k8s) but is no longer rendered "
            "from the manifest; `crank check --fix` removes it",
        )
        for name in ("hpa.yaml", "kustomization.yaml")
    ]
    fixed = CliRunner().invoke(cli, ["check", str(worker_project), "--fix"])
    assert fixed.exit_code == 0, fixed.output
    assert f"fixed {worker_project}/k8s/overlays/hpa/hpa.yaml\n" in fixed.stdout
    assert not (worker_project / "k8s" / "overlays" / "hpa").exists()
    assert (worker_project / "k8s" / "overlays" / "gpu" / "gpu-nodes.yaml").is_file()
    assert hand_written.read_text() == "kind: ConfigMap\n"


def test_manifest_python_dependencies_must_be_in_pyproject_and_fix_adds_them(
    worker_project: Path,
) -> None:
    manifest = worker_project / "src" / "text_echo" / "crank.yaml"
    manifest.write_text(
        manifest.read_text().replace("  python: []", "  python: ['numpy>=1.26', 'PyYAML>=6.0.2']")
    )
    pyproject = worker_project / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text().replace(
            "dependencies = [", 'dependencies = ["pyyaml>=5",  # older floor\n  ', 1
        )
    )
    result = CliRunner().invoke(cli, ["check", str(worker_project), "--format", "json"])
    assert result.exit_code == 1
    findings = json.loads(result.stdout)["projects"][0]["findings"]
    assert [(f["file"], f["message"]) for f in findings if f["kind"] == "semantic"] == [
        (
            "pyproject.toml",
            "does not require 'numpy>=1.26', which crank.yaml's dependencies.python lists",
        ),
        (
            "pyproject.toml",
            "requires 'pyyaml>=5' where crank.yaml's dependencies.python says 'PyYAML>=6.0.2'",
        ),
    ]
    fixed = CliRunner().invoke(cli, ["check", str(worker_project), "--fix"])
    assert fixed.exit_code == 0, fixed.output
    assert f"fixed {worker_project}/pyproject.toml\n" in fixed.stdout
    import tomllib

    text = pyproject.read_text()
    deps = tomllib.loads(text)["project"]["dependencies"]
    assert deps[0] == "PyYAML>=6.0.2" and "numpy>=1.26" in deps
    assert any(d.startswith("crank-workers>=") for d in deps)
    assert "[tool.crank.deploy]" in text and "# crank check keeps this list" in text


def test_a_stale_lock_is_reported(worker_project: Path) -> None:
    from .test_lock import fake_lock

    fake_lock(worker_project)
    assert CliRunner().invoke(cli, ["check", str(worker_project)]).exit_code == 0
    pyproject = worker_project / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text().replace("dependencies = [", 'dependencies = ["idna",')
    )
    result = CliRunner().invoke(cli, ["check", str(worker_project)])
    assert result.exit_code == 1
    assert result.stdout == (
        f"{worker_project}/requirements.lock:1: semantic: does not meet what the image needs "
        "(idna is not locked); run `crank lock` and commit it\n"
    )


def test_a_folder_where_an_artifact_belongs_is_a_finding_that_fix_leaves_alone(
    worker_project: Path,
) -> None:
    dockerfile = worker_project / "Dockerfile"
    dockerfile.unlink()
    dockerfile.mkdir()
    (dockerfile / "notes.txt").write_text("mine")
    expected = (
        f"{worker_project}/Dockerfile:1: unreadable: cannot read Dockerfile, where "
        "'dockerfile' is rendered: it is a directory, not a file; make it a readable file, "
        "or move it away and run `crank check --fix` to render it again\n"
    )
    result = CliRunner().invoke(cli, ["check", str(worker_project)])
    assert (result.exit_code, result.stdout) == (1, expected)
    fixed = CliRunner().invoke(cli, ["check", str(worker_project), "--fix"])
    assert (fixed.exit_code, fixed.stdout) == (1, expected)
    assert fixed.stderr == (
        "crank check: 1 problem(s) in 1 project(s); --fix cannot fix these: make each "
        "unreadable path a readable file, or move it away and run `crank check --fix` again\n"
    )
    assert (dockerfile / "notes.txt").read_text() == "mine"


def test_an_artifact_it_may_not_read_is_a_finding(worker_project: Path) -> None:
    (worker_project / "Dockerfile").chmod(0)
    done = crank_unprivileged(["check", "--format", "json"], cwd=worker_project)
    assert done.returncode == 1, done.stderr
    [project] = json.loads(done.stdout)["projects"]
    assert project["findings"] == [
        {
            "file": "Dockerfile",
            "kind": "unreadable",
            "artifact": "dockerfile",
            "line": 1,
            "message": "cannot read Dockerfile, where 'dockerfile' is rendered: Permission "
            "denied; make it a readable file, or move it away and run `crank check --fix` to "
            "render it again",
            "hunks": [],
        }
    ]


def test_a_pyproject_it_may_not_read_is_a_usage_error(worker_project: Path) -> None:
    """Its dependencies are checked against the manifest's: unreadable, it gave a
    PermissionError traceback."""
    (worker_project / "pyproject.toml").chmod(0)
    done = crank_unprivileged(["check"], cwd=worker_project)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert "pyproject.toml: cannot read: Permission denied" in done.stderr
    assert "hint: make pyproject.toml readable" in done.stderr
