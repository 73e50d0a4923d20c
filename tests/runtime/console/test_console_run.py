"""The console behind a real ``crank run`` (SQLite broker, a worker process): history that
survives a restart, throughput from the worker processes' counters, logs without secrets
or payloads, and a bad CRANK_UI refused at start."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from .conftest import CONSOLE_WORKER, TOKEN, ConsoleClient

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"

if TYPE_CHECKING:
    from collections.abc import Callable

    from .conftest import CrankRun

pytestmark = pytest.mark.slow


def _wait_done(run: CrankRun, task_id: str) -> dict[str, object]:
    def done() -> dict[str, object] | None:
        doc = run.http.get(f"/v1/tasks/{task_id}").json()
        return doc if doc["status"] in ("succeeded", "failed", "dead") else None

    found: dict[str, object] = run.wait_until(done, what=f"task {task_id} to end")
    return found


def _submit(run: CrankRun, capability: str, payload: dict[str, object]) -> str:
    answer = run.http.post("/v1/tasks", json={"capability": capability, "input": payload})
    assert answer.status_code == 202, answer.text
    task_id: str = answer.json()["id"]
    return task_id


def test_tasks_and_dead_letters_survive_a_restart(
    console_run: Callable[..., CrankRun], tmp_path: Path
) -> None:
    run = console_run()
    echoed = _submit(run, "ops.echo", {"text": "kept in the broker"})
    dead = _submit(run, "ops.reindex", {"index": str(tmp_path / "index.txt")})
    assert _wait_done(run, echoed)["status"] == "succeeded"
    assert _wait_done(run, dead)["status"] == "dead"
    assert run.terminate() == 0
    again = console_run()  # same SQLite file, a new server with nothing in memory
    console = ConsoleClient(again.url)
    try:
        listed = console.http.get("/ui/tasks").text
        assert re.findall(r'data-task="([0-9a-f]+)"', listed) == [dead, echoed]
        detail = console.http.get(f"/ui/tasks/{echoed}").text
        assert "kept in the broker" in detail and "succeeded" in detail
        letters = console.http.get("/ui/dead-letters").text
        assert re.findall(r'data-task="([0-9a-f]+)"', letters) == [dead]
        assert "the index file index.txt is missing" in letters
    finally:
        console.close()


def test_overview_counts_what_the_worker_processes_finished(
    console_run: Callable[..., CrankRun], tmp_path: Path
) -> None:
    run = console_run()
    ids = [_submit(run, "ops.echo", {"text": str(i)}) for i in range(3)]
    ids.append(_submit(run, "ops.reindex", {"index": str(tmp_path / "missing")}))
    for task_id in ids:
        _wait_done(run, task_id)
    console = ConsoleClient(run.url)
    try:

        def rates_row() -> str | None:
            page = console.http.get("/ui").text
            found = re.search(r"<tr>\s*<th scope=\"row\">ops.echo</th>(.*?)</tr>", page, re.S)
            return (
                None if found is None else " ".join(re.sub(r"<[^>]+>", " ", found.group(1)).split())
            )

        # the first reading was taken when the console started (nothing finished yet); a
        # rate shows once the overview is looked at a few seconds later
        echo_row = run.wait_until(rates_row, what="the throughput table")
        assert echo_row.startswith("3 0 0 0"), echo_row  # succeeded, failed, retried, dead
        page = console.http.get("/ui").text
        reindex = re.search(r"<th scope=\"row\">ops.reindex</th>(.*?)</tr>", page, re.S)
        assert reindex is not None
        cells = re.findall(r'<td class="num">([^<]*)</td>', reindex.group(1))
        assert cells[:4] == ["0", "0", "0", "1"] and cells[-1] == "100 %"
    finally:
        console.close()


def test_overview_names_a_worker_that_cannot_serve_and_why(
    console_run: Callable[..., CrankRun],
) -> None:
    broken = FIXTURES / "health_workers" / "missing_dependency"
    run = console_run(also=(broken,), ready=False)
    console = ConsoleClient(run.url)
    try:

        def broken_row() -> str | None:
            try:
                page = console.http.get("/ui").text
            except httpx.HTTPError:  # not listening yet: the server does not wait for /ready
                return None
            found = re.search(
                r'<tr class="worker" data-worker="missing-dependency">(.*?)</tr>', page, re.S
            )
            text = (
                None if found is None else " ".join(re.sub(r"<[^>]+>", " ", found.group(1)).split())
            )
            return text if text is not None and " failed " in f" {text} " else None

        row = run.wait_until(broken_row, what="the failed worker on the overview")
        assert "broken.echo" in row and "crank_fixture_dependency_not_installed" in row
        page = console.http.get("/ui").text
        assert "Ready for traffic:" in page and 'tone-bad">no<' in page
        assert "worker &#39;missing-dependency&#39; failed to load" in page  # among the problems
    finally:
        console.close()


def test_the_server_log_holds_no_token_and_no_task_input(
    console_run: Callable[..., CrankRun],
) -> None:
    secret_input = "card 4111-1111-1111-1111 for the console form"
    run = console_run(env={"CRANK_API_TOKEN": TOKEN})
    console = ConsoleClient(run.url)
    try:
        wrong = console.log_in("a-wrong-guess-of-the-token")
        assert wrong.status_code == 401
        assert console.log_in().status_code == 303
        page = console.post_form(
            "/ui/capabilities/ops.echo/call", {"input": f'{{"text": "{secret_input}"}}'}
        )
        assert page.status_code == 200 and "Answer: HTTP 200" in page.text
        assert secret_input in page.text  # the operator sees the answer...
    finally:
        console.close()
    assert run.terminate(signal.SIGTERM) == 0
    log = run.log()
    assert '"console_login_failed"' in log and '"console_login"' in log
    assert "/ui/capabilities/ops.echo/call" in log  # the request is logged...
    # ...never the token (right or wrong), the form, or the task's input
    for secret in (TOKEN, "a-wrong-guess-of-the-token", "4111-1111", "csrf_token"):
        assert secret not in log, secret


def test_a_bad_crank_ui_stops_crank_run_with_a_clear_error(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "crank", "run", "--worker", str(CONSOLE_WORKER), "--port", "1"],
        env={**os.environ, "CRANK_UI": "sometimes"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "console mode 'sometimes' is not one of on, readonly, off" in done.stderr
    assert "CRANK_UI to on, readonly or off" in done.stderr
    assert "Traceback" not in done.stderr
