"""A worker project that declares HTTP services, and a real HTTP service to point at."""

from __future__ import annotations

import http.server
import os
import socket
import subprocess
import sys
import threading
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator


def _installed() -> bool:
    try:
        metadata.distribution("crank-plugin-example")
    except metadata.PackageNotFoundError:
        return False
    return True


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Outside CI, a checkout without the plugin installed skips these tests and says
    how to install it; in CI (CI=true) they run, and fail if it is not installed."""
    if _installed() or os.environ.get("CI", "").lower() == "true":
        return
    here = Path(__file__).parent
    skip = pytest.mark.skip(
        reason="crank-plugin-example is not installed: pip install -e examples/crank-plugin-example"
    )
    for item in items:
        if here in item.path.parents:
            item.add_marker(skip)


class Service(http.server.BaseHTTPRequestHandler):
    """Answers /health with 200 and /broken with 503."""

    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/health" else 503)
        self.end_headers()
        self.wfile.write(b"ok\n")

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="session")
def service() -> Iterator[str]:
    """Base URL of a running HTTP service on a free loopback port."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Service)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def crank(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """The real ``crank`` command, in a fresh process."""
    return subprocess.run(
        [sys.executable, "-m", "crank", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
        check=False,
    )


@pytest.fixture(scope="session")
def scaffolded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A worker made by `crank new-worker`, before any service is declared."""
    out = tmp_path_factory.mktemp("worker")
    result = crank("new-worker", "search-demo", "--no-input", "--output-dir", str(out))
    assert result.returncode == 0, result.stderr
    return out / "search-demo"


def declare_services(project: Path, *entries: str) -> Path:
    """Add ``dependencies.system`` entries (YAML flow mappings) to the project's manifest."""
    manifest = next(project.glob("src/*/crank.yaml"))
    text = manifest.read_text(encoding="utf-8")
    block = "  system:\n" + "".join(f"    - {e}\n" for e in entries)
    assert "  system: []\n" in text
    manifest.write_text(text.replace("  system: []\n", block, 1), encoding="utf-8")
    return manifest
