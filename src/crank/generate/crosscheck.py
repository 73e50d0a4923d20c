"""Semantic cross-checks: do the committed files *mean* what the manifest says?

A diff says that a file changed; these checks say why it matters: the image
would lack a system package, CI would stop running tests, Kubernetes would
schedule the wrong resources, or the code no longer serves what the manifest
declares.
"""

from __future__ import annotations

import ast
import re
from typing import TYPE_CHECKING, Any

import yaml

from crank.errors import GenerateError, WorkerError
from crank.generate.drift import DriftFinding
from crank.generate.lock import LOCK_FILE, lock_state, parse_lock
from crank.generate.pydeps import dependency_gaps
from crank.worker.host import check_handlers, import_entrypoint

if TYPE_CHECKING:
    from crank.generate.project import WorkerProject


def _semantic(file: str, message: str, line: int = 1) -> DriftFinding:
    return DriftFinding(file, "semantic", message, line=line)


def _read(project: WorkerProject, relpath: str) -> str | None:
    """The file's text; None when it is missing or cannot be read (drift reports why)."""
    path = project.root / relpath
    try:
        return path.read_text(encoding="utf-8", errors="replace") if path.is_file() else None
    except OSError:
        return None


def _yaml(text: str) -> Any:
    try:
        return list(yaml.safe_load_all(text))
    except yaml.YAMLError:
        return None


def check_dockerfile(project: WorkerProject) -> list[DriftFinding]:
    text = _read(project, "Dockerfile")
    if text is None:
        return []
    joined = re.sub(r"\\\n", " ", text)
    installed: set[str] = set()
    for command in re.findall(r"apt-get\s+install\s+([^&;|\n]*)", joined):
        installed.update(tok for tok in command.split() if not tok.startswith("-"))
    findings = []
    for dep in project.manifest.dependencies.system:
        if dep.apt and dep.apt not in installed:
            findings.append(
                _semantic(
                    "Dockerfile",
                    f"does not apt-get install {dep.apt!r}, which the manifest needs for "
                    f"system dependency {dep.name!r}",
                )
            )
    if not re.search(r"^USER\s+(?!0\b|root\b)\S+", text, re.MULTILINE):
        findings.append(_semantic("Dockerfile", "does not switch to a non-root USER"))
    if "HEALTHCHECK" not in text:
        findings.append(_semantic("Dockerfile", "has no HEALTHCHECK"))
    return findings


def _run_commands(workflow: Any) -> list[str]:
    runs: list[str] = []
    jobs = workflow.get("jobs", {}) if isinstance(workflow, dict) else {}
    for job in jobs.values() if isinstance(jobs, dict) else ():
        for step in job.get("steps", []) if isinstance(job, dict) else ():
            if isinstance(step, dict) and isinstance(step.get("run"), str):
                runs.append(step["run"])
    return runs


def check_ci(project: WorkerProject) -> list[DriftFinding]:
    relpath = ".github/workflows/ci.yml"
    text = _read(project, relpath)
    if text is None:
        return []
    docs = _yaml(text)
    if not docs:
        return [_semantic(relpath, "is not valid YAML")]
    lines = [line.strip() for run in _run_commands(docs[0]) for line in run.splitlines()]
    findings = []
    if not any(re.match(r"(python3? -m )?crank lint\b", line) for line in lines):
        findings.append(_semantic(relpath, "no step runs `crank lint` on the manifest"))
    if not any(re.match(r"(python3? -m )?pytest\b", line) for line in lines):
        findings.append(_semantic(relpath, "no step runs the tests (pytest)"))
    return findings


def check_kubernetes(project: WorkerProject) -> list[DriftFinding]:
    relpath = "k8s/base/deployment.yaml"
    text = _read(project, relpath)
    if text is None:
        return []
    docs = _yaml(text)
    if not docs or not isinstance(docs[0], dict):
        return [_semantic(relpath, "is not a valid YAML Deployment")]
    want = project.manifest.worker.resources
    containers = docs[0].get("spec", {}).get("template", {}).get("spec", {}).get("containers", [])
    findings = []
    for container in containers if isinstance(containers, list) else ():
        name = container.get("name", "?")
        resources = container.get("resources", {}) or {}
        requests = resources.get("requests", {}) or {}
        limits = resources.get("limits", {}) or {}
        for key, expected in (("cpu", want.cpu), ("memory", want.memory)):
            got = requests.get(key)
            if str(got) != expected:
                findings.append(
                    _semantic(
                        relpath,
                        f"container {name!r} requests {key} {got!r}; the manifest "
                        f"says {expected!r}",
                    )
                )
        has_gpu = "nvidia.com/gpu" in limits
        if want.gpu == "required" and not has_gpu:
            findings.append(
                _semantic(
                    relpath,
                    f"container {name!r} has no nvidia.com/gpu limit "
                    "but the manifest requires a GPU",
                )
            )
        if want.gpu == "none" and has_gpu:
            findings.append(
                _semantic(relpath, f"container {name!r} asks for a GPU the manifest does not need")
            )
        probes = {
            probe: (container.get(probe) or {}).get("httpGet", {}).get("path")
            for probe in ("livenessProbe", "readinessProbe")
        }
        if probes != {"livenessProbe": "/health", "readinessProbe": "/ready"}:
            findings.append(
                _semantic(
                    relpath,
                    f"container {name!r} probes {probes}; expected "
                    "liveness /health and readiness /ready",
                )
            )
    return findings


def check_compose(project: WorkerProject) -> list[DriftFinding]:
    relpath = "docker-compose.yml"
    text = _read(project, relpath)
    if text is None:
        return []
    docs = _yaml(text)
    if not docs or not isinstance(docs[0], dict):
        return [_semantic(relpath, "is not a valid YAML compose file")]
    services = docs[0].get("services") or {}
    worker, redis = services.get("worker"), services.get("redis")
    if not isinstance(worker, dict):
        return [_semantic(relpath, "has no `worker` service")]
    findings = []
    condition = ((worker.get("depends_on") or {}).get("redis") or {}).get("condition")
    if not isinstance(redis, dict) or not redis.get("healthcheck"):
        findings.append(_semantic(relpath, "the `redis` service has no healthcheck"))
    if condition != "service_healthy":
        findings.append(
            _semantic(
                relpath,
                "the worker does not wait for a healthy redis "
                "(depends_on: redis: condition: service_healthy)",
            )
        )
    return findings


def declared_handlers(project: WorkerProject) -> set[str] | None:
    """Capability ids the worker's code marks with ``@capability``, read from source.

    Returns None when the package source cannot be found in the project.
    """
    package_dir = project.manifest_path.parent
    if not (package_dir / "__init__.py").is_file():
        return None
    found: set[str] = set()
    for source in sorted(package_dir.rglob("*.py")):
        try:
            tree = ast.parse(source.read_text(encoding="utf-8"), filename=str(source))
        except (SyntaxError, UnicodeDecodeError, OSError):
            continue
        for node in ast.walk(tree):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for deco in node.decorator_list:
                if (
                    isinstance(deco, ast.Call)
                    and (getattr(deco.func, "id", None) or getattr(deco.func, "attr", None))
                    == "capability"
                    and deco.args
                    and isinstance(deco.args[0], ast.Constant)
                    and isinstance(deco.args[0].value, str)
                ):
                    found.add(deco.args[0].value)
    return found


def check_capabilities(project: WorkerProject) -> list[DriftFinding]:
    """Manifest and code declare the same capabilities.

    The package source in the project is read (no import needed); when that
    fails the entrypoint is imported and checked with ``check_handlers``.
    """
    relpath = project.manifest_relpath
    implemented = declared_handlers(project)
    if implemented is None:
        try:
            check_handlers(project.manifest, import_entrypoint(project.manifest))
        except WorkerError as exc:
            return [_semantic(relpath, exc.message)]
        return []
    declared = set(project.manifest.capability_ids)
    findings = []
    if missing := sorted(declared - implemented):
        findings.append(
            _semantic(
                relpath, "declared but no @capability handler in the code: " + ", ".join(missing)
            )
        )
    if undeclared := sorted(implemented - declared):
        findings.append(
            _semantic(relpath, "handled in the code but not declared: " + ", ".join(undeclared))
        )
    return findings


def check_python_dependencies(project: WorkerProject) -> list[DriftFinding]:
    """pyproject.toml carries every dependencies.python of the manifest."""

    return [_semantic("pyproject.toml", gap.message) for gap in dependency_gaps(project)]


def check_lock(project: WorkerProject) -> list[DriftFinding]:
    """A committed requirements.lock meets every requirement of pyproject.toml, of crank
    and of the image."""

    status, problems = lock_state(project)
    if status != "stale":
        return []
    return [
        _semantic(
            LOCK_FILE,
            f"does not meet what the image needs ({'; '.join(problems)}); "
            "run `crank lock` and commit it",
        )
    ]


#: locked CPU builds whose GPU build is another distribution: on the CUDA image the
#: CPU one runs the model on the CPU, the GPU unused (what the lock should hold instead)
CPU_ONLY_BUILDS = {"onnxruntime": "onnxruntime-gpu"}


def check_gpu_build(project: WorkerProject) -> list[DriftFinding]:
    """A worker that requires a GPU locks the GPU build of its runtime, not the CPU one."""
    if project.manifest.worker.resources.gpu != "required":
        return []
    text = _read(project, LOCK_FILE)
    if text is None:
        return []
    from packaging.utils import canonicalize_name

    try:
        locked = {canonicalize_name(r.name) for r in parse_lock(text)}
    except GenerateError:  # an unreadable lock is check_lock's finding
        return []
    return [
        _semantic(
            LOCK_FILE,
            f"the worker requires a GPU (worker.resources.gpu: required), but the lock holds "
            f"{cpu}, the CPU build: in the CUDA image the model would run on the CPU and the "
            f"GPU sit unused; depend on {gpu} instead of {cpu} in pyproject.toml, then run "
            "`crank lock`",
        )
        for cpu, gpu in CPU_ONLY_BUILDS.items()
        if cpu in locked and gpu not in locked
    ]


def cross_check(project: WorkerProject) -> list[DriftFinding]:
    return [
        *check_python_dependencies(project),
        *check_lock(project),
        *check_gpu_build(project),
        *check_dockerfile(project),
        *check_ci(project),
        *check_kubernetes(project),
        *check_compose(project),
        *check_capabilities(project),
    ]


__all__ = ["cross_check"]
