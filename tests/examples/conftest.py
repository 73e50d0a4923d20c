"""Every example worker served by a real ``crank run`` process (sqlite broker, free port)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from ..ports import free_port

if TYPE_CHECKING:
    from collections.abc import Iterator

REPO = Path(__file__).resolve().parents[2]
PLUGINS = REPO / "plugins"
#: metadata.name of every example, as `crank run --worker` takes it.
EXAMPLES = ("doc-converter", "email-classifier", "image-classifier", "text-streamer")
CRANK_MAIN = "import sys; from crank.cli import main; sys.exit(main())"


class ExamplesServer:
    """``crank run`` serving the examples from a temporary folder."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.artifact_dir = workdir / "artifacts"
        self.log_path = workdir / "crank-run.log"
        self.argv = [
            sys.executable, "-c", CRANK_MAIN, "run",
            "--port", str(self.port),
            "--broker", f"sqlite:///{workdir / 'queue.db'}",
            *(arg for name in EXAMPLES for arg in ("--worker", name)),
        ]  # fmt: skip
        self.env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "CRANK_ARTIFACT_DIR": str(self.artifact_dir),
            "CRANK_MODEL_DIR": str(workdir / "models"),
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=60)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self, timeout_s: float = 120.0) -> None:
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(
                self.argv, cwd=self.workdir, env=self.env, stdout=out, stderr=out
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"crank run exited with {self.proc.returncode}:\n{self.log()}")
            with contextlib.suppress(httpx.HTTPError):
                if self.http.get("/ready").status_code == 200:
                    return
            time.sleep(0.2)
        raise RuntimeError(f"crank run not ready after {timeout_s} s:\n{self.log()[-4000:]}")

    def stop(self) -> None:
        self.http.close()
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="module")
def examples_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ExamplesServer]:
    server = ExamplesServer(tmp_path_factory.mktemp("examples"))
    # Train the digits model before the server starts: worker processes then load it
    # from the cache instead of spending their first seconds training.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CRANK_MODEL_DIR", server.env["CRANK_MODEL_DIR"])
        from crank_image_classifier.model import ensure_model

        ensure_model()
    try:
        server.start()
        yield server
    finally:
        server.stop()
