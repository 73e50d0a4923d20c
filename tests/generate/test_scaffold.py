"""`crank new-worker` output: the file set, plain cookiecutter parity, and a package
that installs, lints, checks and passes its own tests right away."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from crank.cli import cli
from crank.generate.templates import templates_dir, worker_template

from ..ports import free_port
from .conftest import overlay_venv, tree

EXPECTED_FILES = [
    ".dockerignore",
    ".env.example",
    ".github/workflows/ci.yml",
    ".gitignore",
    ".pre-commit-config.yaml",
    ".yamllint",
    "Dockerfile",
    "README.md",
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
    "pyproject.toml",
    "src/text_echo/__init__.py",
    "src/text_echo/crank.yaml",
    "src/text_echo/worker.py",
    "tests/test_worker.py",
]


def test_templates_dir_is_the_source_checkout_in_an_editable_install() -> None:
    assert templates_dir() == Path(__file__).resolve().parents[2] / "templates"
    assert (worker_template() / "cookiecutter.json").is_file()


def test_new_worker_cli_output_and_files(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli,
        [
            "new-worker",
            "text-echo",
            "--no-input",
            "--output-dir",
            str(tmp_path),
            "--capability",
            "text.echo",
            "--capability",
            "text.shout",
        ],
    )
    assert result.exit_code == 0, result.output
    target = tmp_path / "text-echo"
    assert result.stdout == (
        f"created {target} (24 files)\n"
        "  worker text-echo, package text_echo, capabilities text.echo, text.shout\n"
        "next:\n"
        f"  cd {target}\n"
        "  python -m pip install -e '.[test]'\n"
        "  crank lint && python -m pytest\n"
        "  crank run --port 8080    # serves until Ctrl-C; choose any free port\n"
    )
    files = sorted(p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file())
    assert files == EXPECTED_FILES
    assert [p.name for p in tmp_path.iterdir()] == ["text-echo"]  # no staging left behind
    manifest = yaml.safe_load((target / "src" / "text_echo" / "crank.yaml").read_text())
    assert [c["id"] for c in manifest["capabilities"]] == ["text.echo", "text.shout"]
    assert manifest["worker"]["entrypoint"] == "text_echo.worker:TextEchoWorker"
    code = (target / "src" / "text_echo" / "worker.py").read_text()
    assert '@capability("text.shout")\n    def text_shout(\n        self,' in code
    pyproject = (target / "pyproject.toml").read_text()
    assert '[project.entry-points.crank]\ntext-echo = "text_echo"\n' in pyproject


def test_new_worker_with_an_optional_gpu_gets_cpu_artifacts_and_says_so(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli,
        ["new-worker", "vision", "--no-input", "--output-dir", str(tmp_path), "--gpu", "optional"],
    )
    assert result.exit_code == 0, result.output
    target = tmp_path / "vision"
    assert sorted(p.name for p in (target / "k8s" / "overlays").iterdir()) == ["hpa", "keda"]
    readme = (target / "README.md").read_text()
    assert "kubectl apply -k k8s/overlays/keda" in readme
    assert "overlays/gpu" not in readme  # it names only overlays it has
    assert CliRunner().invoke(cli, ["check", str(target)]).exit_code == 0


def test_description_with_yaml_and_toml_specials_is_quoted(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli,
        [
            "new-worker",
            "odd",
            "--no-input",
            "--output-dir",
            str(tmp_path),
            "--description",
            'Says "hi": {now} # really',
        ],
    )
    assert result.exit_code == 0, result.output
    manifest = yaml.safe_load((tmp_path / "odd" / "src" / "odd" / "crank.yaml").read_text())
    assert manifest["metadata"]["description"] == 'Says "hi": {now} # really'
    import tomllib

    pyproject = tomllib.loads((tmp_path / "odd" / "pyproject.toml").read_text())
    assert pyproject["project"]["description"] == 'Says "hi": {now} # really'


def hooks_kept_in(folder: Path) -> dict[str, str]:
    """The environment for a plain cookiecutter run: cookiecutter writes each hook it
    runs to a temporary file it never removes, so they go to the test's own folder."""
    folder.mkdir(parents=True, exist_ok=True)
    return {**os.environ, "TMPDIR": str(folder)}


@pytest.mark.slow
def test_plain_cookiecutter_renders_the_same_project(tmp_path: Path, pristine_worker: Path) -> None:
    out = tmp_path / "cc"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "cookiecutter",
            str(worker_template()),
            "--no-input",
            "--output-dir",
            str(out),
            "worker_name=text-echo",
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
        env=hooks_kept_in(tmp_path / "tmp"),
    )
    assert tree(out / "text-echo") == tree(pristine_worker)


@pytest.mark.slow
def test_plain_cookiecutter_refuses_a_bad_name(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "cookiecutter",
            str(worker_template()),
            "--no-input",
            "--output-dir",
            str(tmp_path / "out"),
            "worker_name=Bad_Name",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=hooks_kept_in(tmp_path / "tmp"),
    )
    assert proc.returncode != 0
    assert "worker_name 'Bad_Name': use lower-case letters, digits and dashes" in proc.stderr
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


@pytest.mark.slow
def test_generated_worker_installs_lints_checks_and_passes_its_tests(
    tmp_path: Path, pristine_worker: Path
) -> None:
    """pip install into a private venv (never the environment running these tests)."""
    python = str(overlay_venv(tmp_path / "venv"))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            argv,
            cwd=pristine_worker,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    install = run(python, "-m", "pip", "install", "-q", "-e", str(pristine_worker))
    assert install.returncode == 0, install.stderr
    tests = run(python, "-m", "pytest", "-q", "-p", "no:cacheprovider")
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "3 passed" in tests.stdout
    crank = "import sys; from crank.cli import main; sys.exit(main())"
    lint = run(python, "-c", crank, "lint", "--strict", "src/text_echo/crank.yaml")
    assert lint.returncode == 0, lint.stdout + lint.stderr
    check = run(python, "-c", crank, "check", ".")
    assert check.returncode == 0, check.stdout + check.stderr
    plugins = run(python, "-c", crank, "plugins", "--format", "json")
    assert plugins.returncode == 0, plugins.stderr
    assert '"text-echo"' in plugins.stdout
    serve_and_call(python, crank, pristine_worker, tmp_path, env)


def serve_and_call(
    python: str, crank: str, project: Path, tmp_path: Path, env: dict[str, str]
) -> None:
    """`crank run` serves the fresh worker: /health, then one capability call over HTTP."""
    import time

    import httpx

    port = free_port()
    log = tmp_path / "run.log"
    with log.open("w") as sink:
        server = subprocess.Popen(
            [
                python,
                "-c",
                crank,
                "run",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--broker",
                f"sqlite:///{tmp_path / 'queue.db'}",
                "--worker",
                "text-echo",
            ],
            cwd=tmp_path,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            with httpx.Client(base_url=base, timeout=60) as client:
                while True:
                    assert server.poll() is None, log.read_text()
                    try:
                        if client.get("/health").status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    assert time.monotonic() < deadline, log.read_text()
                    time.sleep(0.2)
                reply = client.post("/v1/capabilities/text_echo.echo", json={"text": "hi"})
                assert reply.status_code == 200, reply.text
                assert reply.json() == {"text": "hi", "length": 2}
        finally:
            server.terminate()
            server.wait(timeout=30)


@pytest.mark.parametrize("capabilities", [[], ["text.echo", "text.shout_loudly_and_at_length"]])
def test_generated_code_passes_ruff_like_its_ci(tmp_path: Path, capabilities: list[str]) -> None:
    """The generated CI runs `ruff check .` and `ruff format --check .`."""
    import shutil as sh

    args = [a for cap in capabilities for a in ("--capability", cap)]
    result = CliRunner().invoke(
        cli, ["new-worker", "text-echo", "--no-input", "--output-dir", str(tmp_path), *args]
    )
    assert result.exit_code == 0, result.output
    ruff = sh.which("ruff")
    assert ruff, "ruff is not installed: pip install 'crank-workers[dev]'"
    project = tmp_path / "text-echo"
    for argv in ([ruff, "check", "."], [ruff, "format", "--check", "."]):
        proc = subprocess.run(argv, cwd=project, capture_output=True, text=True, check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.slow
def test_next_steps_work_verbatim_in_a_fresh_venv(tmp_path: Path) -> None:
    """crank installed from its wheel into a fresh venv (no pytest, nothing else), then
    new-worker's printed next steps, typed as they are, up to the server."""
    import venv

    from crank.generate.wheel import build_source_wheel, crank_source_dir

    source = crank_source_dir()
    assert source is not None
    wheels = tmp_path / "wheels"
    build_source_wheel(source, wheels)
    venv.EnvBuilder(with_pip=True).create(tmp_path / "venv")
    bin_dir = tmp_path / "venv" / "bin"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(
        PATH=f"{bin_dir}{os.pathsep}{env['PATH']}",
        VIRTUAL_ENV=str(tmp_path / "venv"),
        PIP_FIND_LINKS=f"{wheels} {env.get('PIP_FIND_LINKS', '')}".strip(),
    )

    def shell(line: str, cwd: Path) -> str:
        proc = subprocess.run(
            ["bash", "-ec", line],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert proc.returncode == 0, f"{line}\n{proc.stdout}\n{proc.stderr}"
        return proc.stdout

    shell("python -m pip install -q crank-workers", tmp_path)
    # pytest is not in the venv; the one on PATH (the test runner's) cannot import this crank
    assert not (bin_dir / "pytest").exists()
    work = tmp_path / "work"
    work.mkdir()
    printed = shell("crank new-worker demo --no-input", work)
    steps = [line.strip() for line in printed.split("next:\n", 1)[1].splitlines()]
    assert steps[0] == "cd demo"
    assert steps[-1].startswith("crank run ")
    out = shell(" && ".join(steps[:-1]), work)
    assert "3 passed" in out
    assert shell("command -v pytest", work).strip() == str(bin_dir / "pytest")


@pytest.mark.slow
def test_crank_run_serves_a_project_folder_as_new_worker_made_it(worker_project: Path) -> None:
    """``--worker`` takes the project's folder: its manifest is src/<package>/crank.yaml,
    and its worker processes import the package from src/ (it was refused: "neither a
    crank.yaml/folder nor an installed worker")."""
    from ..runtime.serve.conftest import CrankRun

    routes = CliRunner().invoke(cli, ["routes", "--worker", str(worker_project)])
    assert routes.exit_code == 0, routes.output
    assert "text_echo.echo" in routes.output
    run = CrankRun(
        worker_project.parent,
        "--worker", str(worker_project), "--min-workers", "1", "--max-workers", "1",
        fixture_workers=False,
    )  # fmt: skip
    try:
        run.start()
        answer = run.http.post("/v1/capabilities/text_echo.echo", json={"text": "hello"})
        assert (answer.status_code, answer.json()) == (200, {"text": "hello", "length": 5})
    finally:
        run.close()


def test_a_description_too_long_is_refused_before_rendering(tmp_path: Path) -> None:
    # the rendered manifest failed the schema, and the error named a crank.yaml in a
    # temporary folder already deleted, with a hint to lint it
    result = CliRunner().invoke(
        cli,
        [
            "new-worker",
            "ok9",
            "--no-input",
            "--output-dir",
            str(tmp_path),
            "--description",
            "a" * 100000,
        ],
    )
    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr == (
        "error: --description is too long (100,000 characters; at most 500)\n"
        "  hint: say in a sentence what the worker does; the README holds the rest\n"
    )
    assert list(tmp_path.iterdir()) == []
    longest = CliRunner().invoke(
        cli,
        [
            "new-worker",
            "ok9",
            "--no-input",
            "--output-dir",
            str(tmp_path),
            "--description",
            "a" * 500,
        ],
    )
    assert longest.exit_code == 0, longest.output


@pytest.mark.slow
def test_crank_run_in_the_new_project_leaves_nothing_git_would_add(tmp_path: Path) -> None:
    """The next steps end with `crank run` in the project folder: its SQLite queue and
    usage files there (with their -wal, -shm, -write and -checkpoint companions) are
    ignored by the generated .gitignore, not left for `git add .` to commit."""
    from ..runtime.serve.conftest import CrankRun

    made = CliRunner().invoke(
        cli, ["new-worker", "text-echo", "--no-input", "--output-dir", str(tmp_path)]
    )
    assert made.exit_code == 0, made.output
    project = tmp_path / "text-echo"
    subprocess.run(["git", "init", "-q", str(project)], check=True)
    before = set(os.listdir(project))
    run = CrankRun(
        project, "--worker", str(project), "--min-workers", "1", "--max-workers", "1",
        db="crank-queue.db", fixture_workers=False,
    )  # fmt: skip
    try:
        run.start()
        answer = run.http.post("/v1/capabilities/text_echo.echo", json={"text": "hi"})
        assert answer.status_code == 200, answer.text
        assert run.terminate() == 0
    finally:
        run.close()
    made_by_run = set(os.listdir(project)) - before - {run.log_path.name}
    assert {"crank-queue.db", "crank-usage.db"} <= made_by_run
    listed = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all", *sorted(made_by_run)],
        cwd=project,
        capture_output=True,
        text=True,
        check=True,
    )
    assert listed.stdout == "", f"left for git add: {listed.stdout} (run made {made_by_run})"
