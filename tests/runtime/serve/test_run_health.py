"""One broken worker never takes the others down; /ready, /health and /v1/status say why.

Every test runs ``crank run`` as a real process with real worker processes and asks
it over HTTP, as an operator and a load balancer would.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from .conftest import HTTP_WORKERS

if TYPE_CHECKING:
    from collections.abc import Callable

    CrankRun = Any
    Starter = Callable[..., Any]

pytestmark = pytest.mark.slow

HEALTH_WORKERS = Path(__file__).resolve().parents[2] / "fixtures" / "health_workers"
MISSING = HEALTH_WORKERS / "missing_dependency"
NOT_READY = HEALTH_WORKERS / "not_ready"
HEED_CANCEL = (
    "a synchronous handler must look: ctx.check_cancelled(); an async one must not block "
    "its event loop nor swallow asyncio.CancelledError"
)
IMPORT_ERROR = (
    "entrypoint module 'crank_health_missing_dep.worker' cannot be imported "
    "(No module named 'crank_fixture_dependency_not_installed')"
)


def answer(run: CrankRun, path: str) -> httpx.Response | None:
    """``GET path``, or None while the server does not answer yet."""
    try:
        return run.http.get(path)  # type: ignore[no-any-return]
    except httpx.HTTPError:
        return None


def settled_readiness(run: CrankRun) -> httpx.Response:
    """``/ready`` once no worker is starting and no process is still coming up."""

    def check() -> httpx.Response | None:
        r = answer(run, "/ready")
        if r is None:
            return None
        problems = r.json()["problems"]
        if any("is starting" in p or "worker processes healthy" in p for p in problems):
            return None
        return r

    return run.wait_until(check, what="every worker loaded or reported")  # type: ignore[no-any-return]


def test_a_worker_that_fails_to_import_is_reported_and_the_other_serves(
    crank_run: Starter,
) -> None:
    run = crank_run(
        "--min-workers", "2", "--max-workers", "2",
        workers=(MISSING, HTTP_WORKERS),
        start=False,
    ).start(ready=False)  # fmt: skip
    ready = settled_readiness(run)
    assert (ready.status_code, ready.json()) == (
        503,
        {
            "status": "not ready",
            "problems": [f"worker 'missing-dependency' failed to load: {IMPORT_ERROR}"],
        },
    )
    # its capability answers 503 with the reason, synchronously and queued; not 404
    call = run.http.post("/v1/capabilities/broken.echo", json={"text": "hi"})
    assert call.status_code == 503
    error = call.json()["error"]
    assert (error["code"], error["worker"], error["worker_state"], error["reason"]) == (
        "WORKER_UNAVAILABLE",
        "missing-dependency",
        "failed",
        IMPORT_ERROR,
    )
    assert error["message"] == (
        f"broken.echo cannot be served: its worker 'missing-dependency' failed to load: "
        f"{IMPORT_ERROR}"
    )
    assert "retry-after" not in call.headers  # waiting does not fix an import error
    queued = run.http.post("/v1/tasks", json={"capability": "broken.echo", "input": {}})
    assert (queued.status_code, queued.json()["error"]["code"]) == (503, "WORKER_UNAVAILABLE")
    # the healthy worker serves, from worker processes that stay up
    assert run.http.post("/v1/capabilities/demo.echo", json={"text": "hi"}).json() == {"text": "hi"}
    streamed = run.http.post("/v1/capabilities/demo.count", json={"n": 2})
    assert streamed.json() == {"events": [{"i": 1}, {"i": 2}]}
    status = run.http.get("/v1/status").json()
    assert status["overall_health"] == "degraded"
    assert status["problems"] == [f"worker 'missing-dependency' failed to load: {IMPORT_ERROR}"]
    assert status["worker_pool_health"]["healthy_workers"] == 2
    assert status["worker_pool_health"]["failed_workers"] == 0
    assert status["workers"]["missing-dependency"] == {
        "state": "failed",
        "reason": IMPORT_ERROR,
        "capabilities": ["broken.echo"],
        "ready_processes": 0,
        "live": True,
    }
    assert status["workers"]["http-fixture"]["state"] == "ready"
    assert status["workers"]["http-fixture"]["ready_processes"] == 2
    metrics = run.http.get("/metrics").text
    assert 'crank_worker_state{state="failed",worker="missing-dependency"} 1.0' in metrics
    assert 'crank_worker_state{state="ready",worker="http-fixture"} 1.0' in metrics
    # the person at the terminal is told, once, what serves where and what failed
    log = run.wait_until(lambda: "FAILED to load" in run.log() and run.log(), what="summary")
    assert f"crank is listening on {run.url} with 2 worker process(es)" in log
    assert (
        f"  http-fixture: serves demo.echo, demo.slow, demo.count, demo.summarize at "
        f"{run.url}/v1/capabilities/<id>\n"
    ) in log
    assert f"  missing-dependency: FAILED to load: {IMPORT_ERROR}\n" in log
    assert "    its capabilities answer 503 until it is fixed: broken.echo\n" in log
    # no process died: loading failed inside each, and each kept serving
    assert len(run.workers()) == 2
    assert "worker_died" not in log and "worker_crash_loop" not in log
    assert run.terminate() == 0


def test_installed_worker_package_that_fails_to_import(
    crank_run: Starter, test_plugins: Any
) -> None:
    # the crank under test stays importable where PYTHONPATH is how it is found
    paths = (test_plugins.good, test_plugins.missing_dep, os.environ.get("PYTHONPATH"))
    pythonpath = os.pathsep.join(str(p) for p in paths if p)
    run = crank_run(
        "--min-workers", "1", "--max-workers", "1",
        workers=("testplugin-good", "testplugin-missing-dep"),
        env={"PYTHONPATH": pythonpath},
        start=False,
    ).start(ready=False)  # fmt: skip
    ready = settled_readiness(run)
    reason = (
        "entrypoint module 'crank_testplugin_missing_dep.worker' cannot be imported "
        "(No module named 'crank_fixture_dependency_not_installed')"
    )
    assert (ready.status_code, ready.json()["problems"]) == (
        503,
        [f"worker 'testplugin-missing-dep' failed to load: {reason}"],
    )
    refused = run.http.post("/v1/capabilities/missingdep.echo", json={})
    assert (refused.status_code, refused.json()["error"]["reason"]) == (503, reason)
    greeted = run.http.post("/v1/capabilities/testplugin.greet", json={"name": "ada"})
    assert (greeted.status_code, greeted.json()) == (200, {"greeting": "hello ada"})
    assert run.http.get("/v1/status").json()["overall_health"] == "degraded"
    # the terminal is told once, plainly; each worker process logs it as a log line,
    # never as a Python warning quoting crank's own source
    log = run.log()
    told = "warning: crank plugin 'testplugin-missing-dep' (crank_testplugin_missing_dep) failed"
    assert log.count(told) == 1, log
    assert "PluginLoadWarning" not in log and "build_plugin_manager" not in log, log
    logged = [e for e in run.log_events() if "failed to load and was skipped" in str(e["event"])]
    assert logged and all(e["level"] == "warning" for e in logged), logged
    assert run.terminate() == 0


def test_readiness_hook_gates_ready_and_the_capability(crank_run: Starter, tmp_path: Path) -> None:
    flag, stuck = tmp_path / "ready-flag", tmp_path / "stuck-flag"
    run = crank_run(
        "--min-workers", "1", "--max-workers", "1",
        workers=(NOT_READY, HTTP_WORKERS),
        env={"CRANK_FIXTURE_READY_FILE": str(flag), "CRANK_FIXTURE_STUCK_FILE": str(stuck)},
        start=False,
    ).start(ready=False)  # fmt: skip
    reason = f"check_readiness() raised RuntimeError: {flag} does not exist yet"
    ready = settled_readiness(run)
    assert (ready.status_code, ready.json()["problems"]) == (
        503,
        [f"worker 'not-ready' is not ready: {reason}"],
    )
    refused = run.http.post("/v1/capabilities/gated.echo", json={"text": "x"})
    assert refused.status_code == 503
    assert refused.json()["error"]["worker_state"] == "not_ready"
    assert refused.headers["retry-after"] == "1"
    assert run.http.post("/v1/capabilities/demo.echo", json={"text": "y"}).json() == {"text": "y"}
    assert run.http.get("/health").json() == {"status": "ok", "problems": []}

    flag.touch()  # the worker's own check now passes: ready, and it serves
    run.wait_until(lambda: run.http.get("/ready").status_code == 200, what="ready")
    assert run.http.post("/v1/capabilities/gated.echo", json={"text": "x"}).json() == {"text": "x"}
    assert run.http.get("/v1/status").json()["overall_health"] == "healthy"

    stuck.touch()  # its liveness check fails: /health says so and names it
    health = run.wait_until(
        lambda: (r := run.http.get("/health")).status_code == 503 and r, what="/health 503"
    )
    assert health.json() == {
        "status": "not live",
        "problems": ["worker 'not-ready' is not live: check_liveness() returned False"],
    }
    assert run.http.get("/v1/status").json()["worker_pool_health"]["healthy_workers"] == 0
    stuck.unlink()
    run.wait_until(lambda: run.http.get("/health").status_code == 200, what="/health 200")
    assert run.terminate(signal.SIGINT) == 0


def test_a_hung_worker_process_is_named_everywhere_and_logged(crank_run: Starter) -> None:

    # not replaced (--replace-unlive-after 0): what is said of it while it lives on
    run = crank_run("--min-workers", "2", "--max-workers", "2", "--replace-unlive-after", "0")
    hung, _ = run.workers()
    os.kill(hung, signal.SIGSTOP)  # alive, and silent: as a deadlock would leave it
    try:
        run.wait_until(
            lambda: (r := answer(run, "/health")) is not None and r.status_code == 503,
            what="/health to see the silent process",
        )
        [line] = run.wait_until(
            lambda: [e for e in run.log_events() if e.get("event") == "worker_unresponsive"],
            what="the silent process logged",
        )
        status = run.http.get("/v1/status").json()
        worker = status["workers"]["http-fixture"]
        # its last report said ready: no longer counted once it went silent
        assert (worker["state"], worker["ready_processes"], worker["live"]) == ("ready", 1, False)
        assert line["pid"] == hung and line["since_last_report_s"] > 0
        consumer = line["consumer"]
        assert consumer in worker["reason"]
        assert any(consumer in p for p in status["problems"]), status["problems"]
    finally:
        os.kill(hung, signal.SIGCONT)
    run.wait_until(
        lambda: (r := answer(run, "/health")) is not None and r.status_code == 200,
        what="/health once it reports again",
    )
    run.wait_until(
        lambda: any(e.get("event") == "worker_responsive_again" for e in run.log_events()),
        what="the recovery logged",
    )
    worker = run.http.get("/v1/status").json()["workers"]["http-fixture"]
    assert (worker["ready_processes"], worker["live"], worker["reason"]) == (2, True, None)
    assert run.terminate() == 0


def test_a_crash_loop_is_named_as_one_and_ends_when_processes_live(
    crank_run: Starter, tmp_path: Path
) -> None:
    exit_file = tmp_path / "exit-on-import"
    exit_file.touch()
    run = crank_run(
        "--min-workers", "1", "--max-workers", "1",
        workers=(HEALTH_WORKERS / "exits_on_import",),
        env={"CRANK_FIXTURE_EXIT_FILE": str(exit_file)},
        start=False,
    ).start(ready=False)  # fmt: skip

    def looping() -> dict[str, Any] | None:
        r = answer(run, "/v1/status")
        if r is None:
            return None
        doc: dict[str, Any] = r.json()
        reason = doc["workers"]["exits-on-import"]["reason"] or ""
        return doc if reason.startswith("worker processes keep exiting as they start") else None

    status = run.wait_until(looping, what="the crash loop in /v1/status")
    worker = status["workers"]["exits-on-import"]
    assert worker["state"] == "starting"
    assert "the last with exit code 3" in worker["reason"]
    assert worker["reason"].endswith("read their stderr in the log")
    assert status["overall_health"] == "critical"
    assert status["problems"][0] == "no healthy worker process"
    assert status["problems"][1] == f"worker 'exits-on-import' is starting: {worker['reason']}"
    assert status["problems"][2].endswith("worker process(es) crashed in the last 300 s")
    ready = run.http.get("/ready")
    assert ready.status_code == 503
    assert any(
        p.startswith("worker 'exits-on-import' is starting: worker processes keep exiting")
        for p in ready.json()["problems"]
    ), ready.json()
    # once a process lives, the loop is over: ready again, the crashes still counted
    exit_file.unlink()
    run.wait_ready(timeout_s=120)
    status = run.http.get("/v1/status").json()
    assert status["workers"]["exits-on-import"]["state"] == "ready"
    assert status["workers"]["exits-on-import"]["reason"] is None
    assert status["overall_health"] == "degraded"
    assert status["worker_pool_health"]["failed_workers"] >= 2
    assert run.http.post("/v1/capabilities/exiting.echo", json={"text": "hi"}).json() == {
        "text": "hi"
    }
    assert run.terminate() == 0


def test_a_handler_running_far_past_its_deadline_makes_its_worker_not_live(
    crank_run: Starter, tmp_path: Path
) -> None:
    release = tmp_path / "release"
    run = crank_run(
        "--min-workers", "1", "--max-workers", "1", "--replace-unlive-after", "0",
        workers=(HEALTH_WORKERS / "ignores_deadline",),
        env={"CRANK_FIXTURE_RELEASE_FILE": str(release)},
    )  # fmt: skip
    task = run.http.post("/v1/tasks", json={"capability": "stubborn.wait", "input": {}}).json()
    late = (
        f"worker 'ignores-deadline' is not live: the handler of task {task['id']} "
        f"(stubborn.wait) has run "
    )

    def unhealthy() -> httpx.Response | None:
        r = answer(run, "/health")
        if r is None or r.status_code != 503:
            return None
        return r if any(p.startswith(late) for p in r.json()["problems"]) else None

    # past the deadline (1 s) by more than the visibility timeout (30 s)
    run.wait_until(unhealthy, timeout_s=120, what="/health naming the late handler")
    status = run.http.get("/v1/status").json()
    assert status["workers"]["ignores-deadline"]["live"] is False
    assert status["workers"]["ignores-deadline"]["reason"].endswith(
        f"s past the task's deadline: it does not stop when its task is cancelled ({HEED_CANCEL})"
    )
    assert status["worker_pool_health"]["healthy_workers"] == 0
    assert status["overall_health"] == "critical"  # its one process can take no task
    assert status["problems"][0] == "no healthy worker process"
    assert any(p.startswith(late) for p in status["problems"]), status["problems"]
    # the handler ends: the worker is live again
    release.touch()
    run.wait_until(
        lambda: (r := answer(run, "/health")) is not None and r.status_code == 200,
        what="/health 200 once the handler ended",
    )
    assert run.terminate() == 0


def test_a_process_not_live_for_replace_unlive_after_is_replaced(
    crank_run: Starter, tmp_path: Path
) -> None:
    release = tmp_path / "release"
    run = crank_run(
        "--min-workers", "1", "--max-workers", "1", "--replace-unlive-after", "1",
        workers=(HEALTH_WORKERS / "ignores_deadline",),
        env={"CRANK_FIXTURE_RELEASE_FILE": str(release), "CRANK_GRACE_S": "1"},
    )  # fmt: skip
    [stuck] = run.workers()
    task = run.http.post("/v1/tasks", json={"capability": "stubborn.wait", "input": {}}).json()

    def replaced() -> list[dict[str, Any]]:
        return [e for e in run.log_events() if e.get("event") == "worker_replaced_unlive"]

    # past the deadline (1 s) by more than the visibility timeout (30 s), then 1 s more
    [event] = run.wait_until(replaced, timeout_s=120, what="the stuck process replaced")
    assert event["level"] == "error"
    assert event["pid"] == stuck
    assert event["reason"].startswith(
        f"the handler of task {task['id']} (stubborn.wait) has run "
    ), event
    # stopped as a stop does: at the end of its grace its late task fails as TIMEOUT
    run.wait_until(
        lambda: any(
            e.get("event") == "worker_stopped" and e.get("consumer") == event["consumer"]
            for e in run.log_events()
        ),
        what="the stuck process stopped",
    )
    assert "failing 1 past their deadline" in run.log()
    [fresh] = run.wait_until(
        lambda: (pids := run.workers()) and stuck not in pids and pids,
        what="a new worker process",
    )
    assert fresh != stuck
    release.touch()  # the retry's handler ends: the worker is live again
    run.wait_until(
        lambda: (r := answer(run, "/health")) is not None and r.status_code == 200,
        timeout_s=120,
        what="/health 200 with the new process",
    )
    ended = run.wait_final(task["id"], timeout_s=120)
    assert ended["status"] == "succeeded", ended
    status = run.http.get("/v1/status").json()
    assert status["worker_pool_health"]["replaced_unlive_workers"] == 1
    assert status["worker_pool_health"]["failed_workers"] == 0  # no crash
    assert "worker_died" not in run.log()
    assert "crank_worker_processes_replaced_unlive_total 1.0" in run.http.get("/metrics").text
    assert run.terminate() == 0


def test_a_batch_or_concurrent_handler_far_past_its_deadline_makes_its_worker_not_live(
    crank_run: Starter, tmp_path: Path
) -> None:
    release = tmp_path / "release"
    run = crank_run(
        "--min-workers", "1", "--max-workers", "1", "--replace-unlive-after", "0",
        workers=(HEALTH_WORKERS / "ignores_deadline_batching",),
        env={"CRANK_FIXTURE_RELEASE_FILE": str(release)},
    )  # fmt: skip

    def submit(capability: str) -> str:
        doc = run.http.post("/v1/tasks", json={"capability": capability, "input": {}}).json()
        return str(doc["id"])

    # the concurrent task first: its process takes it to the task loop and goes on
    # claiming (the batch handler then holds the process's main thread)
    concurrent = submit("stubborn.concurrent")
    run.wait_until(
        lambda: run.http.get(f"/v1/tasks/{concurrent}").json()["status"] == "running",
        what="the concurrent task to start",
    )
    batch = submit("stubborn.batch")
    late = {
        f"the handler of task {concurrent} (stubborn.concurrent) has run ",
        f"the batch handler of stubborn.batch (tasks {batch}) has run ",
    }

    def both_named() -> dict[str, Any] | None:
        r = answer(run, "/health")
        if r is None or r.status_code != 503:
            return None
        problems = " ".join(r.json()["problems"])
        return r.json() if all(text in problems for text in late) else None

    # past the deadlines (1 s) by more than the visibility timeout (30 s)
    health = run.wait_until(both_named, timeout_s=120, what="/health naming both late handlers")
    assert any(
        p.startswith("worker 'ignores-deadline-batching' is not live: ") for p in health["problems"]
    ), health
    worker = run.http.get("/v1/status").json()["workers"]["ignores-deadline-batching"]
    assert worker["live"] is False
    assert worker["reason"].count(f"({HEED_CANCEL})") == 2
    assert (
        "s past its tasks' deadlines: it does not stop when they are cancelled"
        in (worker["reason"])
    )
    # the handlers end: the worker is live again
    release.touch()
    run.wait_until(
        lambda: (r := answer(run, "/health")) is not None and r.status_code == 200,
        what="/health 200 once the handlers ended",
    )
    assert run.terminate() == 0


def test_a_handler_calling_sys_exit_fails_its_task_and_its_process_goes_on(
    crank_run: Starter,
) -> None:
    run = crank_run(
        "--min-workers", "1", "--max-workers", "1",
        workers=(HEALTH_WORKERS / "exits_in_handler",),
    )  # fmt: skip
    processes = run.workers()
    for capability in ("exiting.plain", "exiting.batch", "exiting.concurrent"):
        task = run.http.post("/v1/tasks", json={"capability": capability, "input": {}}).json()
        ended = run.wait_final(task["id"])
        assert (ended["status"], ended["attempts"]) == ("dead", 1), ended
        assert ended["error"] == {
            "code": "INTERNAL",
            "message": "the handler called sys.exit(3): a handler fails its task by raising "
            "an error, and the worker process goes on",
            "type": "SystemExit",
        }
    assert run.workers() == processes
    assert "worker_died" not in run.log()
    assert run.http.get("/health").status_code == 200
    assert run.terminate() == 0
