"""``crank run`` / ``crank status`` error paths: clear messages and exit codes, no traceback."""

from __future__ import annotations

import datetime as dt
import json
import socket
from typing import TYPE_CHECKING

import pytest
from click.testing import CliRunner

from crank.cli import cli
from crank.runtime.health_report import SystemSnapshot, health_report

from ..ports import free_port
from .entry import crank

if TYPE_CHECKING:
    from pathlib import Path


FIXTURE = __import__("pathlib").Path(__file__).resolve().parents[1] / "fixtures" / "http_workers"


def test_status_when_nothing_listens_exits_3(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    code, out, err = crank(["status", "--url", url], capsys)
    assert (code, out) == (3, "")
    assert err == (
        f"error: no crank server answers at {url} (ConnectError)\n"
        "  hint: start one with `crank run`, or pass --url of the running server\n"
    )


def test_run_refuses_the_in_process_memory_broker(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = crank(
        ["run", "--worker", str(FIXTURE), "--broker", "memory://", "--port", str(free_port())],
        capsys,
    )
    assert code == 2
    assert err == (
        "error: the memory:// broker lives inside one process; worker processes cannot share it\n"
        "  hint: use the default sqlite:///crank-queue.db or redis://HOST:PORT/DB\n"
    )


def test_run_reports_an_unreachable_redis(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    url = f"redis://127.0.0.1:{free_port()}/0"
    code, _, err = crank(
        ["run", "--worker", str(FIXTURE), "--broker", url, "--port", str(free_port())], capsys
    )
    assert code == 3
    assert err.startswith("error: ")
    assert url in err.splitlines()[0]
    assert err.splitlines()[1].startswith("  hint: ")
    assert "Traceback" not in err


def test_run_names_an_unknown_worker(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = crank(["run", "--worker", "no-such-worker"], capsys)
    assert code == 2
    assert err.startswith(
        "error: --worker 'no-such-worker' is neither a crank.yaml, its folder or its worker "
        "project, nor an installed worker\n"
    )


def test_run_reports_a_taken_port(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        code, _, err = crank(["run", "--worker", str(FIXTURE), "--port", str(port)], capsys)
    assert code == 3
    assert err.startswith(f"error: cannot listen on 127.0.0.1:{port}: ")
    assert err.endswith("  hint: pick another --port, or stop what is listening there\n")


def test_one_worker_named_twice_is_no_clash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """By its folder and by its crank.yaml (or the same --worker again): it was refused as
    "capability ... is declared by two workers", naming the same worker and file twice."""
    monkeypatch.chdir(tmp_path)
    with socket.socket() as busy:  # the workers are accepted: it goes on to the port
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        code, _, err = crank(
            ["run", "--worker", str(FIXTURE), "--worker", str(FIXTURE / "crank.yaml"),
             "--worker", str(FIXTURE), "--port", str(port)],
            capsys,
        )  # fmt: skip
    assert code == 3, err
    assert err.startswith(f"error: cannot listen on 127.0.0.1:{port}: "), err


def test_run_refuses_inconsistent_bounds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = crank(
        ["run", "--worker", str(FIXTURE), "--min-workers", "5", "--max-workers", "2"], capsys
    )
    assert code == 2
    assert err == (
        "error: worker bounds are inconsistent: --min-workers 5 --max-workers 2\n"
        "  hint: use 0 <= --min-workers <= --max-workers (--max-workers 0: HTTP API only)\n"
    )


def test_run_refuses_a_dev_pool_of_no_process(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = crank(
        ["run", "--worker", str(FIXTURE), "--mode", "dev", "--min-workers", "0"], capsys
    )
    assert code == 2
    assert err == (
        "error: --mode dev keeps a fixed pool: --min-workers 0 would start no worker "
        "process, and tasks would wait forever\n"
        "  hint: use --mode prod to scale to zero, or --max-workers 0 for the HTTP API "
        "alone (workers elsewhere)\n"
    )
    assert not (tmp_path / "crank-queue.db").exists()


@pytest.mark.parametrize("value", ["-1", "nan", "inf"])
def test_run_refuses_a_replace_unlive_after_that_is_no_number_of_seconds(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = crank(
        ["run", "--worker", str(FIXTURE), "--replace-unlive-after", value], capsys
    )
    assert (code, out) == (2, "")
    assert err.startswith(
        f"error: Invalid value for '--replace-unlive-after': {float(value)} is not a number "
        "of seconds, 0 or more\n"
    )


def test_run_names_crank_replace_unlive_s_when_it_is_negative(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CRANK_REPLACE_UNLIVE_S", "-3")
    code, out, err = crank(["run", "--worker", str(FIXTURE), "--max-workers", "0"], capsys)
    assert (code, out) == (2, "")
    assert err == (
        "error: replace_unlive_s must be a number of seconds, 0 or more (got -3.0)\n"
        "  hint: set --replace-unlive-after or CRANK_REPLACE_UNLIVE_S to the seconds a worker "
        "process may stay not live before it is replaced (0: never), or unset it (20)\n"
    )
    assert not (tmp_path / "crank-queue.db").exists()


def test_help_lists_the_options() -> None:
    result = CliRunner().invoke(cli, ["run", "--help"])
    assert result.exit_code == 0
    for option in (
        "--broker",
        "--host",
        "--port",
        "--min-workers",
        "--max-workers",
        "--worker",
        "--mode",
    ):
        assert option in result.output
    status = CliRunner().invoke(cli, ["status", "--help"])
    assert "--url" in status.output


def test_status_prints_the_report_of_a_live_server(capsys: pytest.CaptureFixture[str]) -> None:
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    # the report crank run sends, made by the same function
    snapshot = SystemSnapshot(
        broker_ok=False,
        min_workers=1,
        total_workers=1,
        healthy_workers=1,
        busy_workers=None,
        queue_depth=None,
        oldest_task_age_s=None,
    )
    report = health_report(snapshot, dt.datetime(2026, 11, 22, tzinfo=dt.UTC))
    assert (report["overall_health"], report["problems"]) == ("critical", ["broker unreachable"])

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps(report).encode()
            self.send_response(200 if self.path == "/v1/status" else 404)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            return None

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        code, out, _ = crank(["status", "--url", f"http://127.0.0.1:{server.server_port}"], capsys)
    finally:
        server.shutdown()
        server.server_close()
    assert code == 1  # critical
    assert json.loads(out) == report


@pytest.mark.parametrize(
    ("variable", "what", "default"),
    [
        ("CRANK_MAX_PENDING", "number of queued tasks accepted", 10000),
        ("CRANK_MAX_INFLIGHT", "number of HTTP requests served at once", 64),
        ("CRANK_MAX_BODY_BYTES", "largest request body accepted, in bytes", 1048576),
    ],
)
def test_an_overload_bound_below_1_names_its_variable(
    variable: str,
    what: str,
    default: int,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(variable, "0")
    code, out, err = crank(
        ["run", "--worker", str(FIXTURE), "--max-workers", "0", "--port", str(free_port())], capsys
    )
    assert (code, out) == (2, "")
    assert err == (
        f"error: {variable} must be at least 1 (got 0): it is the {what}\n"
        f"  hint: set {variable} to a whole number of 1 or more, or unset it ({default})\n"
    )


@pytest.mark.parametrize("host", ["999.1.1.1", "nosuch.invalid", "192.0.2.1"])
def test_run_on_a_host_that_is_not_this_machine_is_a_usage_error(
    host: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No such name, or an address (TEST-NET-1) no interface here has: the --host is
    wrong (2), not the port taken (3)."""
    monkeypatch.chdir(tmp_path)
    port = free_port()
    argv = ["run", "--worker", str(FIXTURE), "--max-workers", "0", "--host", host]
    code, out, err = crank([*argv, "--port", str(port)], capsys)
    assert (code, out) == (2, "")
    assert err.startswith(f"error: cannot listen on {host}:{port}: ")
    assert err.endswith(
        "  hint: --host must be an address of this machine, e.g. 127.0.0.1 or 0.0.0.0\n"
    )


@pytest.mark.parametrize(
    ("name", "why"), [("notadb.txt", "file is not a database"), ("adir", "unable to open")]
)
def test_a_queue_file_that_cannot_be_opened_leaves_no_lock_file_behind(
    name: str,
    why: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notadb.txt").write_text("hello\n")
    (tmp_path / "adir").mkdir()
    argv = ["run", "--worker", str(FIXTURE), "--max-workers", "0", "--port", str(free_port())]
    code, out, err = crank([*argv, "--broker", f"sqlite:///{name}"], capsys)
    assert (code, out) == (2, "")  # the URL names no queue: a usage error
    assert err.startswith(f"error: cannot open the SQLite queue {name}: {why}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adir", "notadb.txt"]
    # a lock file that was there before is someone else's: it stays
    (tmp_path / f"{name}-write").touch()
    code, _, _ = crank([*argv, "--broker", f"sqlite:///{name}"], capsys)
    assert code == 2
    assert (tmp_path / f"{name}-write").exists()
