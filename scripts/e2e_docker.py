#!/usr/bin/env python3
"""End-to-end check of a generated worker on a real Docker engine, the way a user gets it.

Build crank's wheel, install it (not editable) into a fresh virtual environment with
`pip install crank-workers` (the wheel found through PIP_FIND_LINKS, as a package index
would serve it), scaffold a worker with `crank new-worker`, type the next steps it
prints (install, lint, tests), `crank check` it, `crank build .` with no flags on a
locally made base named by CRANK_BASE_IMAGE (nothing is pulled: no image registry is
reachable in CI), run the container, call /health and one capability over HTTP, and
check that the image is small, runs as a non-root user and holds no secret. Prints a
short report; exits non-zero with a clear message on any failure. Cleans up the
container, the worker image and, if it started it, the Docker daemon. The base images
are kept (tagged) so a second run is fast; pass --purge to remove them too.

Run as root (it may start dockerd): `python scripts/e2e_docker.py`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import venv
from dataclasses import dataclass, field
from pathlib import Path

BASE_RAW = "crank-e2e-base:bookworm-raw"
BASE = "crank-e2e-base:bookworm"
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
CAPABILITY = "e2e.echo"
SIZE_GOAL_MB = 300
SOURCE = Path(__file__).resolve().parents[1]
#: Values that look like credentials (in image history, env or config).
SECRET_PATTERNS = [
    re.compile(r"(?i)(api[_-]?key|secret|token|passw(or)?d)[\"']?\s*[=:]\s*[\"']?[^\s\"']{8,}"),
    re.compile(r"AKIA[0-9A-Z]{16}"),
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    re.compile(r"\b(ghp|gho|ghs)_[A-Za-z0-9]{36}\b"),
    re.compile(r"\bsk-[A-Za-z0-9]{20,}\b"),
]


class E2EFailure(Exception):
    """One step failed; the message says which and why."""


@dataclass
class Report:
    rows: list[tuple[str, str, float]] = field(default_factory=list)

    def add(self, step: str, detail: str, seconds: float) -> None:
        self.rows.append((step, detail, seconds))
        print(f"ok   {step:<28} {detail} ({seconds:.1f}s)", flush=True)

    def print(self, ok: bool) -> None:
        print("\ncrank e2e report")
        for step, detail, seconds in self.rows:
            print(f"  {step:<28} {seconds:6.1f}s  {detail}")
        print("RESULT:", "PASS" if ok else "FAIL")


def run(
    *argv: str,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 600,
    what: str = "",
    stdin: int | None = None,
) -> str:
    try:
        proc = subprocess.run(
            argv,
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=stdin,
        )
    except subprocess.TimeoutExpired:
        raise E2EFailure(f"{what or argv[0]}: timed out after {timeout:.0f}s") from None
    except FileNotFoundError:
        raise E2EFailure(f"{argv[0]}: not installed (run scripts/setup-system.sh)") from None
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-25:])
        raise E2EFailure(f"{what or ' '.join(argv)} failed (exit {proc.returncode}):\n{tail}")
    return proc.stdout


def docker_ok() -> bool:
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return False


class Daemon:
    """dockerd, started by us only when none answers."""

    def __init__(self, workdir: Path) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = workdir / "dockerd.log"

    def ensure(self) -> str:
        if docker_ok():
            return "already running"
        if os.geteuid() != 0:
            raise E2EFailure("no Docker daemon answers and starting dockerd needs root")
        dockerd = shutil.which("dockerd") or "/usr/sbin/dockerd"
        if not Path(dockerd).exists():
            raise E2EFailure("dockerd is not installed: apt-get install docker.io")
        with self.log.open("wb") as sink:
            self.proc = subprocess.Popen([dockerd], stdout=sink, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise E2EFailure(f"dockerd exited ({self.proc.returncode}):\n{self._tail()}")
            if docker_ok():
                return f"started dockerd (pid {self.proc.pid})"
            time.sleep(0.5)
        raise E2EFailure(f"dockerd did not answer within 60s:\n{self._tail()}")

    def _tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-15:])

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


def image_exists(ref: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", ref], capture_output=True).returncode == 0


def ensure_base(workdir: Path) -> str:
    """A Debian bookworm base with python3 + venv and this machine's CA bundle."""
    if image_exists(BASE):
        return f"{BASE} (cached)"
    if not image_exists(BASE_RAW):
        mmdebstrap = subprocess.Popen(
            [
                "mmdebstrap",
                "--variant=apt",
                "--include=python3,python3-venv,ca-certificates",
                "--dpkgopt=path-exclude=/usr/share/man/*",
                "--dpkgopt=path-exclude=/usr/share/doc/*",
                "--dpkgopt=path-exclude=/usr/share/locale/*",
                "--dpkgopt=path-include=/usr/share/locale/locale.alias",
                "bookworm",
                "-",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        try:
            run(
                "docker",
                "import",
                "-",
                BASE_RAW,
                stdin=mmdebstrap.stdout.fileno() if mmdebstrap.stdout else None,
                what="docker import of the mmdebstrap rootfs",
            )
        finally:
            if mmdebstrap.stdout:
                mmdebstrap.stdout.close()
            if mmdebstrap.wait(timeout=600) != 0:
                raise E2EFailure("mmdebstrap failed (is deb.debian.org reachable?)")
    context = workdir / "base"
    context.mkdir()
    shutil.copy2(CA_BUNDLE, context / "ca-certificates.crt")
    (context / "Dockerfile").write_text(
        f"FROM {BASE_RAW}\n"
        "COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt\n"
        "ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt \\\n"
        "    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \\\n"
        "    REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt\n"
        'CMD ["python3"]\n'
    )
    run(
        "docker",
        "build",
        "-q",
        "-t",
        BASE,
        str(context),
        what="building the base image",
        env={**os.environ, "DOCKER_BUILDKIT": "0"},
    )
    return f"{BASE} (built with mmdebstrap, no pull)"


def crank_wheel(dest: Path) -> Path:
    """crank's wheel, built from this checkout: what a package index would serve."""
    run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "-q",
        "-w",
        str(dest),
        str(SOURCE),
        what="building crank's wheel",
    )
    wheels = sorted(dest.glob("crank_workers-*.whl"))
    if not wheels:
        raise E2EFailure(f"pip wheel left no crank_workers-*.whl in {dest}")
    return wheels[-1]


def user_env(venv_dir: Path, wheels: Path) -> dict[str, str]:
    """The environment of a user with ``venv_dir`` activated and crank's wheel findable."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "DOCKER_HOST", "VIRTUAL_ENV", "PYTHONHOME")
    }
    env["VIRTUAL_ENV"] = str(venv_dir)
    env["PATH"] = f"{venv_dir / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["PIP_FIND_LINKS"] = f"{wheels} {env.get('PIP_FIND_LINKS', '')}".strip()
    return env


def next_steps(printed: str) -> list[str]:
    """The commands `crank new-worker` prints after ``next:``, one per line."""
    if "next:\n" not in printed:
        raise E2EFailure(f"crank new-worker printed no next steps:\n{printed}")
    return [line.strip() for line in printed.split("next:\n", 1)[1].splitlines() if line.strip()]


def shell(line: str, cwd: Path, env: dict[str, str], what: str) -> str:
    return run("bash", "-ec", line, cwd=cwd, env=env, what=what, timeout=900)


def http(method: str, url: str, body: dict[str, object] | None = None) -> tuple[int, str]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(  # noqa: S310 - loopback only
        url,
        data=data,
        method=method,
        headers={"content-type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:  # noqa: S310 - loopback
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def wait_healthy(base: str, container: str, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            status, _ = http("GET", f"{base}/health")
            if status == 200:
                return
        except (OSError, urllib.error.URLError):
            pass
        state = run("docker", "inspect", "-f", "{{.State.Running}}", container).strip()
        if state != "true":
            logs = subprocess.run(
                ["docker", "logs", "--tail", "30", container],
                capture_output=True,
                text=True,
                check=False,
            )
            raise E2EFailure(
                f"container exited before /health answered:\n{logs.stdout}{logs.stderr}"
            )
        time.sleep(0.5)
    raise E2EFailure(f"{base}/health did not answer 200 within {seconds:.0f}s")


def secrets_in(texts: list[str]) -> list[str]:
    return [m.group(0)[:40] for text in texts for p in SECRET_PATTERNS for m in p.finditer(text)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--purge", action="store_true", help="also remove the base images")
    args = parser.parse_args(argv)

    report = Report()
    workdir = Path(tempfile.mkdtemp(prefix="crank-e2e-"))
    daemon = Daemon(workdir)
    # unique names: the Docker engine is shared
    worker = f"e2e-echo-{os.getpid()}"
    tag = f"{worker}:0.1.0"  # what `crank build .` names it: <worker>:<version>
    container = f"crank-e2e-{os.getpid()}"
    ok = False
    dangling: set[str] = set()
    try:
        started = time.monotonic()
        report.add("docker daemon", daemon.ensure(), time.monotonic() - started)
        dangling = dangling_images()

        started = time.monotonic()
        report.add("base image", ensure_base(workdir), time.monotonic() - started)

        started = time.monotonic()
        wheels = workdir / "wheels"
        wheel = crank_wheel(wheels)
        venv.EnvBuilder(with_pip=True).create(workdir / "venv")
        env = user_env(workdir / "venv", wheels)
        shell("python -m pip install -q crank-workers", workdir, env, "pip install crank-workers")
        version = shell("crank --version", workdir, env, "crank --version").strip()
        report.add(
            "pip install crank-workers", f"{wheel.name}: {version}", time.monotonic() - started
        )

        started = time.monotonic()
        printed = shell(
            f"crank new-worker {worker} --no-input --capability {CAPABILITY}",
            workdir,
            env,
            "crank new-worker",
        )
        steps = next_steps(printed)
        project = workdir / worker
        report.add("scaffold", f"{project}, {len(steps)} next steps", time.monotonic() - started)

        started = time.monotonic()
        if not steps[-1].startswith("crank run"):
            raise E2EFailure(f"the last next step is not `crank run`: {steps}")
        out = shell(" && ".join(steps[:-1]), workdir, env, "the next steps new-worker printed")
        report.add(
            "next steps",
            " && ".join(steps[:-1]) + ": " + out.strip().splitlines()[-1],
            time.monotonic() - started,
        )

        started = time.monotonic()
        shell("crank lint --strict && crank check .", project, env, "crank lint + check")
        report.add("crank lint + check", "clean", time.monotonic() - started)

        started = time.monotonic()
        missing = f"crank-e2e-no-such-base:{os.getpid()}"
        refused = subprocess.run(
            ["crank", "build", ".", "--quiet"],
            cwd=project,
            env={**env, "CRANK_BASE_IMAGE": missing},
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if refused.returncode != 4 or f"the base image {missing} is not on this machine" not in (
            refused.stderr
        ):
            raise E2EFailure(
                f"a build on a missing base should exit 4 with a hint naming it; got exit "
                f"{refused.returncode}:\n{refused.stderr[-2000:]}"
            )
        report.add("missing base image", "exit 4, hint names it", time.monotonic() - started)

        started = time.monotonic()
        out = shell("crank build .", project, {**env, "CRANK_BASE_IMAGE": BASE}, "crank build .")
        report.add("crank build .", out.strip().splitlines()[-1], time.monotonic() - started)

        started = time.monotonic()
        # the build locked the dependencies; a --locked rebuild reuses every layer
        shell("crank lock --check .", project, env, "crank lock --check")
        out = shell(
            "crank build . --locked",
            project,
            {**env, "CRANK_BASE_IMAGE": BASE},
            "crank build . --locked",
        )
        report.add("crank build --locked", out.strip().splitlines()[-1], time.monotonic() - started)

        started = time.monotonic()
        image = json.loads(run("docker", "image", "inspect", tag))[0]
        size_mb = image["Size"] / 1e6
        labels = image["Config"].get("Labels") or {}
        if labels.get("crank.capabilities") != CAPABILITY:
            raise E2EFailure(
                f"image label crank.capabilities is "
                f"{labels.get('crank.capabilities')!r}, expected {CAPABILITY!r}"
            )
        if not labels.get("crank.manifest.digest"):
            raise E2EFailure("image has no crank.manifest.digest label")
        verdict = "goal met" if size_mb < SIZE_GOAL_MB else f"OVER the {SIZE_GOAL_MB} MB goal"
        report.add("image size", f"{size_mb:.0f} MB ({verdict})", time.monotonic() - started)

        started = time.monotonic()
        user = image["Config"].get("User") or ""
        if user.split(":")[0] in ("", "0", "root"):
            raise E2EFailure(f"image runs as root (Config.User={user!r})")
        run(
            "docker",
            "run",
            "-d",
            "--name",
            container,
            "-p",
            "127.0.0.1::8080",
            tag,
            what="docker run",
        )
        port = run("docker", "port", container, "8080/tcp").strip().splitlines()[0]
        base = "http://" + port.strip()
        wait_healthy(base, container)
        uid = run("docker", "exec", container, "id", "-u").strip()
        if uid == "0":
            raise E2EFailure("the container's process runs as uid 0")
        inside = run("docker", "exec", container, "crank", "--version").strip()
        if inside != version:
            raise E2EFailure(f"the image runs {inside!r}, the host {version!r}")
        pid1 = run("docker", "exec", container, "cat", "/proc/1/cmdline").replace("\0", " ")
        if not pid1.startswith("dumb-init"):
            raise E2EFailure(f"PID 1 of the container is {pid1!r}, not an init")
        report.add(
            "container /health",
            f"{base} answers 200, uid {uid}, {inside}, PID 1 dumb-init",
            time.monotonic() - started,
        )

        started = time.monotonic()
        status, body = http("POST", f"{base}/v1/capabilities/{CAPABILITY}", {"text": "hello"})
        if status != 200 or json.loads(body) != {"text": "hello", "length": 5}:
            raise E2EFailure(f"POST /v1/capabilities/{CAPABILITY} answered {status}: {body}")
        report.add(
            "capability call",
            f"POST /v1/capabilities/{CAPABILITY} -> {body}",
            time.monotonic() - started,
        )

        started = time.monotonic()
        history = run("docker", "history", "--no-trunc", "--format", "{{.CreatedBy}}", tag)
        inspected = json.loads(run("docker", "inspect", container))[0]
        found = secrets_in(
            [history, "\n".join(inspected["Config"].get("Env") or []), json.dumps(labels)]
        )
        if found:
            raise E2EFailure(f"key-like values in the image history or environment: {found}")
        leaked = run(
            "docker",
            "exec",
            container,
            "sh",
            "-c",
            "ls -a /var/lib/crank /opt/venv 2>/dev/null | grep -E '^\\.env$' || true",
        )
        if leaked.strip():
            raise E2EFailure("a .env file was copied into the image")
        report.add("no secrets", "history, Env and labels scanned", time.monotonic() - started)
        ok = True
    except E2EFailure as exc:
        print(f"\nerror: {exc}", file=sys.stderr)
    finally:
        cleanup(container, tag, args.purge, daemon, dangling)
        shutil.rmtree(workdir, ignore_errors=True)
        report.print(ok)
    return 0 if ok else 1


def dangling_images() -> set[str]:
    proc = subprocess.run(
        ["docker", "images", "-q", "--no-trunc", "--filter", "dangling=true"],
        capture_output=True,
        text=True,
        check=False,
    )
    return set(proc.stdout.split()) if proc.returncode == 0 else set()


def cleanup(container: str, tag: str, purge: bool, daemon: Daemon, dangling: set[str]) -> None:
    if docker_ok():
        subprocess.run(["docker", "rm", "-f", container], capture_output=True, check=False)
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True, check=False)
        # the classic builder leaves the build stage of a multi-stage build untagged
        new = sorted(dangling_images() - dangling)
        if new:
            subprocess.run(["docker", "rmi", "-f", *new], capture_output=True, check=False)
        if purge:
            subprocess.run(
                ["docker", "rmi", "-f", BASE, BASE_RAW], capture_output=True, check=False
            )
    daemon.stop()


if __name__ == "__main__":
    sys.exit(main())
