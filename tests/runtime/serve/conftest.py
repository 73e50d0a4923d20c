"""``crank run`` as a real child process: the ``crank_run`` factory fixture."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...ports import free_port

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

import httpx
import pytest

HTTP_WORKERS = Path(__file__).resolve().parents[2] / "fixtures" / "http_workers"
LIMITED_WORKERS = Path(__file__).resolve().parents[2] / "fixtures" / "limited_workers"
CRANK_MAIN = "import sys; from crank.cli import main; sys.exit(main())"


def child_pids(parent: int) -> list[int]:
    """Live direct children of ``parent`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == parent and fields[0] != "Z":
            found.append(int(entry.name))
    return sorted(found)


class CrankRun:
    def __init__(
        self,
        workdir: Path,
        *args: str,
        env: dict[str, str] | None = None,
        db: str = "queue.db",
        workers: tuple[str | Path, ...] = (HTTP_WORKERS,),
        fixture_workers: bool = True,
    ) -> None:
        if not fixture_workers:  # only the workers ``args`` name (none: every installed one)
            workers = ()
        self.workdir = workdir
        self.port = free_port()
        self.db = workdir / db
        self.broker_url = f"sqlite:///{self.db}"
        if "--broker" in args:
            self.broker_url = args[args.index("--broker") + 1]
        else:
            args = ("--broker", self.broker_url, *args)
        self.argv = [
            sys.executable, "-c", CRANK_MAIN, "run",
            "--port", str(self.port),
            *(arg for worker in workers for arg in ("--worker", str(worker))),
            *args,
        ]  # fmt: skip
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.log_path = workdir / f"crank-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.http = httpx.Client(base_url=self.url, timeout=30)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_events(self) -> list[dict[str, Any]]:
        """The JSON lines of the log (stdout and stderr of crank run and its workers)."""
        events = []
        for line in self.log().splitlines():
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    events.append(json.loads(line))
        return events

    def start(self, *, ready: bool = True, timeout_s: float = 60.0) -> CrankRun:
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(
                self.argv, cwd=self.workdir, env=self.env, stdout=out, stderr=out
            )
        if ready:
            self.wait_ready(timeout_s)
        return self

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"crank run exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if self.http.get("/ready").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"crank run not ready after {timeout_s} s:\n{self.log()}")

    def wait_until(self, check: Any, timeout_s: float = 60.0, what: str = "condition") -> Any:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            value = check()
            if value:
                return value
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}:\n{self.log()[-4000:]}")

    def wait_final(self, task_id: str, timeout_s: float = 60.0) -> dict[str, Any]:
        """The task's document once it ended: succeeded, failed or dead."""

        def ended() -> dict[str, Any] | None:
            doc: dict[str, Any] = self.http.get(f"/v1/tasks/{task_id}").json()
            return doc if doc["status"] in ("succeeded", "failed", "dead") else None

        found: dict[str, Any] = self.wait_until(ended, timeout_s, what=f"task {task_id} to end")
        return found

    def workers(self) -> list[int]:
        return child_pids(self.pid)

    def terminate(self, sig: int = signal.SIGTERM, timeout_s: float = 60.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout=timeout_s)

    def close(self) -> None:
        self.http.close()
        if self.proc is not None and self.proc.poll() is None:
            for pid in self.workers():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            self.proc.kill()
            self.proc.wait(timeout=30)


@pytest.fixture
def crank_run(tmp_path: Path) -> Iterator[Callable[..., CrankRun]]:
    """``crank_run(*args, env=..., db=..., workers=..., start=True, fixture_workers=True)``:
    a started ``crank run`` on a free port, serving ``workers`` (paths or names; the HTTP
    fixture worker by default) and those ``args`` name; with ``fixture_workers=False``
    (or ``workers=()``) and no ``--worker``: every installed worker."""
    started: list[CrankRun] = []

    def make(
        *args: str,
        env: dict[str, str] | None = None,
        db: str = "queue.db",
        workers: tuple[str | Path, ...] = (HTTP_WORKERS,),
        start: bool = True,
        fixture_workers: bool = True,
    ) -> CrankRun:
        run = CrankRun(
            tmp_path, *args, env=env, db=db, workers=workers, fixture_workers=fixture_workers
        )
        started.append(run)
        return run.start() if start else run

    yield make
    for run in started:
        run.close()
