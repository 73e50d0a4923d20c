"""``crank tasks list|show|cancel|redrive`` as a person runs them: the real ``crank``
command in its own process, against ``crank run`` with a real worker process; every
exit status the command documents."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import TYPE_CHECKING, Any

import pytest

from ..conftest import FIXTURE_WORKERS
from .conftest import CRANK_MAIN

if TYPE_CHECKING:
    from pathlib import Path

    from .conftest import CrankRun

pytestmark = pytest.mark.slow


def crank(
    run: CrankRun | None, *args: str, token: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``crank tasks ARGS --url`` of ``run``; the token (if any) from CRANK_API_TOKEN."""
    url = run.url if run is not None else "http://127.0.0.1:9"
    env = {**run.env} if run is not None else {}
    env.pop("CRANK_API_TOKEN", None)
    if token is not None:
        env["CRANK_API_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-c", CRANK_MAIN, "tasks", *args, "--url", url],
        capture_output=True,
        text=True,
        env=env or None,
        timeout=120,
        check=False,
    )


def queue(run: CrankRun, capability: str, payload: dict[str, Any]) -> str:
    answer = run.http.post("/v1/tasks", json={"capability": capability, "input": payload})
    assert answer.status_code == 202, answer.text
    return str(answer.json()["id"])


def status_of(run: CrankRun, task_id: str) -> str:
    return str(run.http.get(f"/v1/tasks/{task_id}").json()["status"])


def test_list_show_cancel_and_redrive_from_the_command_line(crank_run: Any, tmp_path: Path) -> None:
    run: CrankRun = crank_run(
        "--worker", str(FIXTURE_WORKERS), "--min-workers", "1", "--max-workers", "1",
        fixture_workers=False,
    )  # fmt: skip
    started, stopped = tmp_path / "started", tmp_path / "stopped"
    busy = queue(run, "fixture.until_cancelled", {"started": str(started), "stopped": str(stopped)})
    run.wait_until(started.exists, what="the only worker to be busy")
    waiting = queue(run, "fixture.mark", {"path": str(tmp_path / "marks")})

    listed = crank(run, "list", "--status", "pending", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    assert [t["id"] for t in json.loads(listed.stdout)["tasks"]] == [waiting]
    text = crank(run, "list")
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert [line.split()[:2] for line in lines] == [[waiting, "pending"], [busy, "running"]]

    cancelled = crank(run, "cancel", waiting)
    assert cancelled.returncode == 0, cancelled.stderr
    assert "never run" in cancelled.stdout
    again = crank(run, "cancel", waiting)
    assert again.returncode == 1
    assert "already ended: cancelled" in again.stderr
    stopping = crank(run, "cancel", busy)
    assert stopping.returncode == 0, stopping.stderr
    assert "told to stop" in stopping.stdout
    run.wait_until(lambda: status_of(run, busy) == "cancelled", what="the running task to stop")
    shown = crank(run, "show", waiting)
    assert shown.returncode == 0, shown.stderr
    assert "status:       cancelled" in shown.stdout
    assert "cancelled before it ran" in shown.stdout
    assert not (tmp_path / "marks").exists()  # the cancelled task never ran

    needed = tmp_path / "needed"
    dead = [queue(run, "fixture.needs_file", {"path": str(needed)}) for _ in range(2)]
    for task_id in dead:
        run.wait_until(lambda t=task_id: status_of(run, t) == "dead", what="a dead letter")
    needed.write_text("here")
    one = crank(run, "redrive", dead[0])
    assert one.returncode == 0, one.stderr
    run.wait_until(lambda: status_of(run, dead[0]) == "succeeded", what="the redriven task")
    everything = crank(run, "redrive", "--capability", "fixture.needs_file")
    assert everything.returncode == 0, everything.stderr
    assert everything.stdout.startswith("1 dead letter(s) of fixture.needs_file")
    run.wait_until(lambda: status_of(run, dead[1]) == "succeeded", what="the bulk redrive")

    not_dead = crank(run, "redrive", dead[0])
    assert not_dead.returncode == 1
    assert "not a dead letter: it is succeeded" in not_dead.stderr
    # none left (or a capability id mistyped): nothing to do, not a silent 0
    none_left = crank(run, "redrive", "--capability", "fixture.needs_file")
    assert none_left.returncode == 1
    assert none_left.stderr.startswith("error: no dead letter of fixture.needs_file to redrive")
    assert "hint: `crank tasks list --status dead`" in none_left.stderr


def test_each_error_has_its_exit_status(crank_run: Any) -> None:
    run: CrankRun = crank_run(env={"CRANK_API_TOKEN": "s3cret-token"})
    unknown = crank(run, "show", "no-such-task", token="s3cret-token")
    assert unknown.returncode == 2
    assert unknown.stderr.splitlines() == [
        "error: no task 'no-such-task'",
        "  hint: tasks expire after their result TTL; `crank tasks list` shows them",
    ]  # one hint, not the client's as well
    refused = crank(run, "list", "--caller", "two words", token="s3cret-token")
    assert refused.returncode == 2
    assert refused.stderr.count("hint:") == 1, refused.stderr
    no_token = crank(run, "list")
    assert no_token.returncode == 2
    assert "CRANK_API_TOKEN" in no_token.stderr
    neither = crank(run, "redrive", token="s3cret-token")
    assert neither.returncode == 2
    assert "--capability" in neither.stderr
    bad = crank(run, "list", "--status", "lost", token="s3cret-token")
    assert bad.returncode == 2
    assert "Traceback" not in unknown.stderr + no_token.stderr + neither.stderr + bad.stderr
    nobody = crank(None, "list")
    assert nobody.returncode == 3
    assert "no crank server answers" in nobody.stderr


@pytest.mark.parametrize("command", [("tasks", "list"), ("status",)])
def test_a_url_that_is_no_http_url_is_a_bad_argument(command: tuple[str, ...]) -> None:
    """Not 'no server answers' (3) nor a client failure (4): the argument is wrong (2)."""
    done = subprocess.run(
        [sys.executable, "-c", CRANK_MAIN, *command, "--url", "127.0.0.1:8080"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert (
        "Invalid value for '--url': '127.0.0.1:8080' is not an http:// or https:// URL "
        "(e.g. http://127.0.0.1:8080)"
    ) in done.stderr
    assert "Traceback" not in done.stderr
