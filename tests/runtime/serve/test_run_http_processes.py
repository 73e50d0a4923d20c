"""``crank run --http-processes 2``: two processes serve the port and answer alike.

Each test runs ``crank run`` as a real process and talks to it over real HTTP. Every
request the tests make to tell the processes apart goes over a new connection (the
kernel hands each new connection to one of the processes); which process answered
is read from the access log, whose lines carry ``http_process`` and the request id.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from crank.runtime.cpus import usable_cpus

from .conftest import CRANK_MAIN, LIMITED_WORKERS, child_pids
from .test_run_health import IMPORT_ERROR, MISSING

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

    CrankRun = Any
    Starter = Callable[..., Any]

pytestmark = pytest.mark.slow

HTTP_PROCESS = "crank.runtime.http_process"
LIMITED = LIMITED_WORKERS


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def loads_httptools(pid: int) -> bool:
    return "httptools" in Path(f"/proc/{pid}/maps").read_text()


def http_pids(run: CrankRun) -> list[int]:
    return [pid for pid in child_pids(run.pid) if HTTP_PROCESS in cmdline(pid)]


def fresh(run: CrankRun, method: str, path: str, **kwargs: Any) -> httpx.Response:
    """One request on a connection of its own (either process may take it)."""
    headers = {"connection": "close", **kwargs.pop("headers", {})}
    return run.http.request(method, path, headers=headers, **kwargs)  # type: ignore[no-any-return]


def answered_by(run: CrankRun, response: httpx.Response) -> int:
    """Which HTTP process answered ``response``: its access log line says."""
    rid = response.headers["x-request-id"]

    def find() -> int | None:
        for line in run.log().splitlines():
            if rid not in line:
                continue
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            if doc.get("event") == "http_request" and doc.get("request_id") == rid:
                return int(doc["http_process"])
        return None

    found: int = run.wait_until(find, what=f"the access log line of request {rid}")
    return found


def from_both(
    run: CrankRun, ask: Callable[[], httpx.Response], timeout_s: float = 120.0
) -> dict[int, list[httpx.Response]]:
    """Ask until both HTTP processes have answered; every answer, by process."""
    seen: dict[int, list[httpx.Response]] = {}
    deadline = time.monotonic() + timeout_s
    while len(seen) < 2:
        assert time.monotonic() < deadline, f"only process(es) {sorted(seen)} answered"
        response = ask()
        seen.setdefault(answered_by(run, response), []).append(response)
    return seen


def metric(text: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        if line.startswith(f"{name}{{{wanted}}} "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.fixture(params=["sqlite", "redis"])
def broker_args(request: pytest.FixtureRequest) -> tuple[str, ...]:
    if request.param == "sqlite":
        return ()  # crank_run's default: a SQLite file in the test's folder
    return ("--broker", str(request.getfixturevalue("redis_server")))


def test_two_processes_serve_the_port_and_say_the_same(
    crank_run: Starter, broker_args: tuple[str, ...]
) -> None:
    run = crank_run(
        "--http-processes", "2", "--min-workers", "2", "--max-workers", "2", *broker_args
    )  # fmt: skip
    processes = child_pids(run.pid)
    assert len(http_pids(run)) == 2, [cmdline(p) for p in processes]
    assert len(processes) == 4  # two serving the port, two worker processes
    # the HTTP stack is loaded where HTTP is served, not in the main process, which only
    # supervises (httptools' parser is a shared object: its mapping says it is loaded;
    # /ready may come from one HTTP process while the other is still importing)
    run.wait_until(
        lambda: [loads_httptools(pid) for pid in http_pids(run)] == [True, True],
        what="httptools loaded in both HTTP processes",
    )
    assert not loads_httptools(run.pid)
    summary = f"crank is listening on {run.url} (2 HTTP processes) with 2 worker process(es)"
    run.wait_until(lambda: summary in run.log(), what="the start-up summary")

    # many calls at once, each on its own connection: each gets its own answer
    answers: dict[str, httpx.Response] = {}

    def call(text: str) -> None:
        answers[text] = fresh(run, "POST", "/v1/capabilities/demo.echo", json={"text": text})

    threads = [threading.Thread(target=call, args=(f"call-{i}",)) for i in range(24)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert {t: (r.status_code, r.json()) for t, r in answers.items()} == {
        t: (200, {"text": t}) for t in answers
    }
    calls = len(answers)
    by_process = from_both(
        run, lambda: fresh(run, "POST", "/v1/capabilities/demo.echo", json={"text": "more"})
    )
    calls += sum(len(rs) for rs in by_process.values())

    # /metrics adds every process's counts up: both processes answered calls above, so a
    # process counting only its own would show fewer (probes are not in the access log)
    scrapes = [fresh(run, "GET", "/metrics").text for _ in range(6)]
    counted = {
        metric(t, "crank_http_requests_total", method="POST", route="/v1/capabilities/{id}",
               status="200")
        for t in scrapes
    }  # fmt: skip
    assert counted == {float(calls)}

    # /v1/status and /ready: the same from both, and the processes are counted
    statuses = from_both(run, lambda: fresh(run, "GET", "/v1/status"))
    for responses in statuses.values():
        doc = responses[-1].json()
        assert doc["http_processes"] == {"configured": 2, "alive": 2, "restarts": 0}
        assert doc["worker_pool_health"]["total_workers"] == 2
        assert doc["worker_pool_health"]["healthy_workers"] == 2
    assert {fresh(run, "GET", "/ready").status_code for _ in range(6)} == {200}

    assert run.terminate() == 0
    log = run.log()
    assert "Traceback" not in log
    assert log.count('"event": "http_processes_stopped"') == 1


def test_ready_is_503_from_every_process_while_the_workers_cannot_load(
    crank_run: Starter,
) -> None:
    run = crank_run(
        "--http-processes", "2", "--min-workers", "2", "--max-workers", "2",
        workers=(MISSING,),
        start=False,
    ).start(ready=False)  # fmt: skip
    problem = f"worker 'missing-dependency' failed to load: {IMPORT_ERROR}"

    def settled() -> httpx.Response | None:
        try:
            r = fresh(run, "GET", "/ready")
        except httpx.HTTPError:
            return None
        return r if problem in r.json()["problems"] else None

    run.wait_until(settled, what="the failure reported")

    # each HTTP process reads the supervisor's file on its own: one may say it a moment
    # (a publish interval) before the other does
    def both_say_it() -> dict[int, list[httpx.Response]] | None:
        answers = from_both(run, lambda: fresh(run, "GET", "/ready"))
        return (
            answers
            if all(problem in rs[-1].json()["problems"] for rs in answers.values())
            else None
        )

    run.wait_until(both_say_it, what="the failure reported by both HTTP processes")
    # from then on, every answer of either says it
    answers = from_both(run, lambda: fresh(run, "GET", "/ready"))
    for responses in answers.values():
        for r in responses:
            assert r.status_code == 503
            assert problem in r.json()["problems"]
    status = from_both(run, lambda: fresh(run, "GET", "/v1/status"))
    for responses in status.values():
        assert responses[-1].json()["workers"]["missing-dependency"]["state"] == "failed"


def test_max_concurrency_counts_the_calls_of_every_http_process(
    crank_run: Starter, tmp_path: Path
) -> None:
    # limited.hold allows 2 at once; one worker process runs the first call, the second
    # waits in the queue. Each HTTP process used to count only the calls it admitted
    # itself: with the two in different processes, a third was admitted by either and
    # queued (2 + 2 in all) instead of the documented 429.
    gate = tmp_path / "gate"
    gate.mkdir()
    run = crank_run(
        "--http-processes", "2", "--min-workers", "1", "--max-workers", "1",
        workers=(LIMITED,),
        env={"CRANK_FIXTURE_GATE_DIR": str(gate)},
    )  # fmt: skip
    answers: list[httpx.Response] = []

    def call() -> None:
        with httpx.Client(base_url=run.url, timeout=120) as client:
            answers.append(client.post("/v1/capabilities/limited.hold", json={}))

    first = threading.Thread(target=call)
    first.start()
    run.wait_until(lambda: len(list(gate.glob("running-*"))) == 1, what="the first call running")
    second = threading.Thread(target=call)
    second.start()
    queued = 'crank_queue_depth{capability="limited.hold"} 1.0'
    run.wait_until(
        lambda: queued in fresh(run, "GET", "/metrics").text, what="the second call queued"
    )
    refused = from_both(
        run, lambda: fresh(run, "POST", "/v1/capabilities/limited.hold", json={}, timeout=60)
    )
    for responses in refused.values():
        for r in responses:
            assert r.status_code == 429
            assert r.json()["error"]["message"].startswith(
                "limited.hold is at its max_concurrency of 2: 2 synchronous or streaming "
                "call(s) of it are in progress"
            )
    (gate / "open").touch()
    first.join(timeout=120)
    second.join(timeout=120)
    assert sorted(a.status_code for a in answers) == [200, 200]
    # the calls' marks were let go: a new call is admitted again
    assert fresh(run, "POST", "/v1/capabilities/limited.hold", json={}).status_code == 200
    assert run.terminate() == 0


def test_an_http_process_that_dies_is_replaced(crank_run: Starter) -> None:
    run = crank_run("--http-processes", "2", "--min-workers", "1", "--max-workers", "1")
    first, second = http_pids(run)
    os.kill(first, signal.SIGKILL)

    def replaced() -> list[int] | None:
        pids = http_pids(run)
        return pids if len(pids) == 2 and first not in pids else None

    pids = run.wait_until(replaced, what="a new HTTP process")
    assert second in pids
    died = [
        json.loads(line)
        for line in run.log().splitlines()
        if '"event": "http_process_died"' in line
    ]
    assert [(d["pid"], d["exit_code"]) for d in died] == [(first, -signal.SIGKILL)]

    def counted() -> dict[str, int] | None:
        doc: dict[str, int] = fresh(run, "GET", "/v1/status").json()["http_processes"]
        return doc if doc == {"configured": 2, "alive": 2, "restarts": 1} else None

    run.wait_until(counted, what="the restart counted in /v1/status")
    answers = from_both(
        run, lambda: fresh(run, "POST", "/v1/capabilities/demo.echo", json={"text": "again"})
    )
    assert {r.status_code for rs in answers.values() for r in rs} == {200}


def test_sigterm_lets_a_call_in_flight_finish_then_stops_everything(
    crank_run: Starter,
) -> None:
    run = crank_run("--http-processes", "2", "--min-workers", "1", "--max-workers", "1")
    children = child_pids(run.pid)
    result: dict[str, httpx.Response] = {}

    def slow() -> None:
        result["answer"] = fresh(run, "POST", "/v1/capabilities/demo.slow", json={"seconds": 1.5})

    caller = threading.Thread(target=slow)
    caller.start()

    def running() -> bool:
        stats = fresh(run, "GET", "/v1/status").json()
        return bool(stats["queue_health"]["running_tasks"])

    run.wait_until(running, what="the slow call running")
    assert run.terminate() == 0
    caller.join(timeout=60)
    assert (result["answer"].status_code, result["answer"].json()) == (200, {"slept": 1.5})
    for pid in children:
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text()


def test_kill_9_of_crank_run_stops_its_http_processes(crank_run: Starter) -> None:
    run = crank_run("--http-processes", "2", "--min-workers", "1", "--max-workers", "1")
    servers = http_pids(run)
    os.kill(run.pid, signal.SIGKILL)
    run.proc.wait(timeout=30)

    def gone() -> bool:
        return all(HTTP_PROCESS not in cmdline(pid) for pid in servers)

    run.wait_until(gone, what="the HTTP processes to stop with their parent")
    with pytest.raises(httpx.ConnectError):
        fresh(run, "GET", "/health")


def test_console_sessions_hold_across_the_processes(crank_run: Starter) -> None:
    # no API token: the session key is random, and the processes must share it
    run = crank_run("--http-processes", "2", "--min-workers", "0", "--max-workers", "0")
    page = run.http.get("/ui/capabilities/demo.echo")
    assert page.status_code == 200
    csrf = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]

    def cancel() -> httpx.Response:
        task = fresh(
            run, "POST", "/v1/tasks", json={"capability": "demo.echo", "input": {"text": "x"}}
        )
        assert task.status_code == 202, task.text
        task_id = task.json()["id"]
        return fresh(run, "POST", f"/ui/tasks/{task_id}/cancel", data={"csrf_token": csrf})

    # only the console's answers are told apart (the submits may go anywhere)
    seen: dict[int, list[httpx.Response]] = {}
    deadline = time.monotonic() + 120
    while len(seen) < 2:
        assert time.monotonic() < deadline, f"only process(es) {sorted(seen)} answered"
        answer = cancel()
        seen.setdefault(answered_by(run, answer), []).append(answer)
    for responses in seen.values():
        for answer in responses:
            assert answer.status_code == 303, answer.text[:300]


@contextlib.contextmanager
def pinned(choose: Callable[[set[int]], Iterable[int]]) -> Iterator[None]:
    """This thread on the CPUs ``choose`` picks from its own while the block runs: a
    ``crank run`` started inside inherits them (as under ``taskset``)."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, set(choose(before)))
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def test_auto_serves_the_port_from_one_process_per_usable_cpu(crank_run: Starter) -> None:
    """``--http-processes auto`` counts the CPUs ``crank run`` may use, as it is started:
    the CPUs of this test (its affinity and cgroup quota are inherited), at most four
    of them here (on a big machine every one would only make the test slow)."""
    with pinned(lambda cpus: sorted(cpus)[:4]):
        cpus = usable_cpus()
        run = crank_run("--http-processes", "auto", "--min-workers", "1", "--max-workers", "1")
    if cpus == 1:  # a one-CPU machine: the plain single process
        assert http_pids(run) == []
        return
    assert len(http_pids(run)) == cpus
    summary = f"crank is listening on {run.url} ({cpus} HTTP processes)"
    run.wait_until(lambda: summary in run.log(), what="the start-up summary")
    status = run.wait_until(
        lambda: (
            (doc := fresh(run, "GET", "/v1/status").json())["http_processes"]["alive"] == cpus
            and doc
        ),
        what=f"{cpus} HTTP processes alive",
    )
    assert status["http_processes"]["configured"] == cpus
    assert run.terminate() == 0


def test_auto_follows_the_affinity_crank_run_is_started_with(crank_run: Starter) -> None:
    """Started pinned to one CPU (as ``taskset -c 0`` would), auto is one process: the
    supervisor serves the port itself, as without the flag."""
    first = min(os.sched_getaffinity(0))
    with pinned(lambda cpus: [first]):
        run = crank_run("--http-processes", "auto", "--min-workers", "1", "--max-workers", "1")
    assert os.sched_getaffinity(run.pid) == {first}
    assert http_pids(run) == []
    summary = f"crank is listening on {run.url} with 1 worker process(es)"
    run.wait_until(lambda: summary in run.log(), what="the start-up summary")
    assert "http_processes" not in fresh(run, "GET", "/v1/status").json()
    assert run.terminate() == 0


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--http-processes", "0"], {}, "'--http-processes': 0 is not in the range 1<=x<=64"),
        ([], {"CRANK_HTTP_PROCESSES": "0"}, "http processes must be between 1 and 64 (got 0)"),
        (
            [],
            {"CRANK_HTTP_PROCESSES": "two"},
            "CRANK_HTTP_PROCESSES='two' is not a number or 'auto'",
        ),
        (["--http-processes", "two"], {}, "'two' is neither a whole number nor 'auto'"),
    ],
)
def test_a_bad_number_of_http_processes_is_a_usage_error(
    tmp_path: Path, args: list[str], env: dict[str, str], message: str
) -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", CRANK_MAIN, "run", "--port", "1", *args],
        cwd=tmp_path,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_an_http_process_started_by_hand_says_what_it_is(tmp_path: Path) -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", HTTP_PROCESS],
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr == (
        "error: no plan on stdin: this process is started by crank run --http-processes\n"
    )
