"""The supervisor with real (stand-in) child processes: replace the dead, recover, scale, stop."""

from __future__ import annotations

import datetime as dt
import os
import signal
import sys
import time
from typing import TYPE_CHECKING, Any

import pytest

from crank.runtime import supervisor as supervisor_module
from crank.runtime.brokers import open_broker
from crank.runtime.brokers.contract import ClaimOptions, TaskSpec
from crank.runtime.config import RuntimeConfig
from crank.runtime.supervisor import Supervisor, worker_command

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from crank.runtime.brokers.contract import Broker

# A stand-in worker: reports (no workers, all well) until SIGTERM, then exits 0 (the real
# one drains first). Without reports the supervisor would not count it healthy.
SLEEPER = """
import os, signal, sys, time
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
report = int(os.environ["CRANK_REPORT_FD"])
while True:
    os.write(report, b'{"workers": []}\\n')
    time.sleep(0.2)
"""


def sleeper(config: RuntimeConfig, consumer: str) -> list[str]:
    return [sys.executable, "-c", SLEEPER, consumer]


@pytest.fixture
def broker() -> Iterator[Broker]:
    opened = open_broker("memory://")
    yield opened
    opened.close()


def wait_for(check: object, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.02)
    raise AssertionError("condition not reached")


def test_worker_command_names_broker_consumer_and_manifests(tmp_path: object) -> None:
    from pathlib import Path

    config = RuntimeConfig(
        broker_url="sqlite:///q.db",
        manifest_paths=(Path("/w/a.yaml"), Path("/w/b.yaml")),
        grace_s=7,
    )
    argv = worker_command(config, "host-1-w3")
    assert argv[:3] == [sys.executable, "-m", "crank.runtime.worker_process"]
    assert argv[3:] == [
        "--broker", "sqlite:///q.db", "--consumer", "host-1-w3", "--batch-size", "8",
        "--visibility-timeout", "30", "--grace", "7", "--health-interval", "2",
        "--manifest", "/w/a.yaml", "--manifest", "/w/b.yaml",
    ]  # fmt: skip


def test_dead_child_is_recovered_and_replaced(broker: Broker) -> None:
    config = RuntimeConfig(
        broker_url="memory://", min_workers=2, max_workers=2, monitor_interval_s=0.05
    )
    sup = Supervisor(config, broker, command=sleeper)
    sup.start()
    try:
        wait_for(lambda: sup.worker_counts() == (2, 2))
        victim_consumer = sup.consumers()[0]
        broker.submit(TaskSpec(capability="a.x", payload={}))
        (claim,) = broker.claim(ClaimOptions(victim_consumer, limit=1, visibility_timeout_s=600))
        victim = sup.pids()[0]
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: sup.events.replaced == 1 and sup.worker_counts() == (2, 2))
        assert victim not in sup.pids()
        assert victim_consumer not in sup.consumers()
        assert (sup.events.died, sup.events.replaced, sup.events.recovered_tasks) == (1, 1, 1)
        # the recovered task is deliverable again at once, long before its 600 s visibility timeout
        (again,) = broker.claim(ClaimOptions("other", limit=1))
        assert again.task.id == claim.task.id
    finally:
        sup.stop(grace_s=5)
    assert sup.worker_counts() == (0, 0)


def test_scale_step_applies_the_policy(broker: Broker) -> None:
    config = RuntimeConfig(
        broker_url="memory://", min_workers=1, max_workers=3, target_queue_per_worker=2
    )
    sup = Supervisor(config, broker, command=sleeper, capabilities=["a.x", "b.y"])
    sup.start()
    try:
        broker.submit_many([TaskSpec(capability="a.x", payload={"i": i}) for i in range(9)])
        decision = sup.scale_step(dt.datetime(2026, 11, 22, tzinfo=dt.UTC))
        assert (decision.decision_type, decision.current_workers, decision.target_workers) == (
            "scale_up",
            1,
            2,
        )
        assert sup.worker_counts()[0] == 2
        assert sup.last_decision() == decision.as_dict()
        assert sup.weights["a.x"] > 0.5 > sup.weights["b.y"] > 0
        decision = sup.scale_step()
        assert (decision.decision_type, decision.target_workers) == ("scale_up", 3)
        # drain the queue: the pool shrinks gently towards min
        while claims := broker.claim(ClaimOptions("drain", limit=50)):
            broker.ack_many([(c, {}) for c in claims])
        decision = sup.scale_step()
        assert (decision.decision_type, decision.target_workers) == ("scale_down", 2)
        wait_for(lambda: sup.worker_counts()[0] == 2)
    finally:
        sup.stop(grace_s=5)


def test_scaling_down_stops_an_idle_process_before_the_newest_busy_one(broker: Broker) -> None:
    # the newest process runs a task (its report says so): stopped, it would cut that
    # task at the end of its grace period, to run it again from the start elsewhere
    busy = SLEEPER.replace('{"workers": []}', '{"workers": [], "running": 1}')
    spawned: list[str] = []

    def command(config: RuntimeConfig, consumer: str) -> list[str]:
        spawned.append(consumer)
        return [sys.executable, "-c", busy if len(spawned) == 3 else SLEEPER, consumer]

    config = RuntimeConfig(broker_url="memory://", min_workers=1, max_workers=3)
    sup = Supervisor(config, broker, command=command)
    sup.start()
    try:
        sup._spawn()
        sup._spawn()
        wait_for(lambda: sup.worker_counts() == (3, 3))
        wait_for(lambda: [c.report.running if c.report else None for c in sup._children][2] == 1)
        decision = sup.scale_step()  # nothing queued, nothing running in the broker
        assert (decision.decision_type, decision.target_workers) == ("scale_down", 2)
        assert [c.consumer for c in sup._children if c.stopping] == [spawned[1]]
        wait_for(lambda: sup.consumers() == [spawned[0], spawned[2]])
    finally:
        sup.stop(grace_s=5)


def test_stop_kills_children_that_ignore_sigterm_after_grace(
    broker: Broker, tmp_path: Path
) -> None:
    ignoring = tmp_path / "ignoring-sigterm"
    stubborn = (
        "import pathlib, signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "pathlib.Path(sys.argv[1]).touch(); time.sleep(600)"
    )
    config = RuntimeConfig(broker_url="memory://", min_workers=1, max_workers=1)
    sup = Supervisor(
        config, broker, command=lambda c, name: [sys.executable, "-c", stubborn, str(ignoring)]
    )
    sup.start()
    wait_for(ignoring.exists)  # the child ignores SIGTERM from here on
    (pid,) = sup.pids()
    (child,) = sup._children
    sup.stop(grace_s=0.1)
    assert child.proc.returncode == -signal.SIGKILL  # SIGTERM was not enough: killed
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # and reaped


def test_crash_loop_backs_off_instead_of_respawning_twice_a_second(broker: Broker) -> None:
    now = [1000.0]
    # the test drives check_children itself; the monitor thread stays asleep
    config = RuntimeConfig(
        broker_url="memory://", min_workers=1, max_workers=1, monitor_interval_s=3600
    )
    crashing = [sys.executable, "-c", "import sys; sys.exit(4)"]
    sup = Supervisor(config, broker, command=lambda c, name: crashing, clock=lambda: now[0])
    sup.start()
    holds = []
    for _ in range(6):
        wait_for(lambda: sup.pids() == [])  # the child exited by itself
        sup.check_children()
        if sup.worker_counts()[0] == 0:  # held back: advance the clock past the hold
            holds.append(round(sup._hold_until - now[0], 2))
            now[0] = sup._hold_until
            sup.check_children()
        now[0] += 0.1  # each replacement dies 0.1 s after its start
    sup.stop(grace_s=1)
    assert holds == [0.5, 1.0, 2.0, 4.0, 8.0]
    assert sup.events.died == 6
    # failed_workers: crashes within the window, forgotten once it has passed
    assert sup.crashes() == sup.runtime_metrics().failed_workers == 6
    now[0] += 300.1
    assert sup.crashes() == 0


def test_signal_deaths_are_not_a_crash_loop(broker: Broker) -> None:
    config = RuntimeConfig(
        broker_url="memory://", min_workers=1, max_workers=1, monitor_interval_s=3600
    )
    sup = Supervisor(config, broker, command=sleeper)
    sup.start()
    try:
        for _ in range(3):
            wait_for(lambda: sup.worker_counts() == (1, 1))
            (pid,) = sup.pids()
            os.kill(pid, signal.SIGKILL)
            wait_for(lambda pid=pid: pid not in sup.pids())
            sup.check_children()
            assert sup.worker_counts()[0] == 1  # replaced at once, no hold
    finally:
        sup.stop(grace_s=5)


def test_a_process_is_healthy_only_while_it_reports(broker: Broker) -> None:
    now = [1000.0]
    once = (
        "import os, signal, sys, time; signal.signal(signal.SIGTERM, lambda *a: sys.exit(0)); "
        "os.write(int(os.environ['CRANK_REPORT_FD']), "
        'b\'{"workers": [{"name": "w", "capabilities": ["a.x"], '
        '"state": "ready"}]}\\n\'); time.sleep(600)'
    )
    config = RuntimeConfig(
        broker_url="memory://", min_workers=1, max_workers=1, monitor_interval_s=3600
    )
    sup = Supervisor(
        config,
        broker,
        command=lambda c, name: [sys.executable, "-c", once],
        workers={"w": ["a.x"]},
        clock=lambda: now[0],
    )
    sup.start()
    try:
        assert sup.worker_health()["w"].state in ("starting", "ready")
        wait_for(lambda: sup.worker_counts() == (1, 1))  # alive and reported
        assert sup.worker_health()["w"].state == "ready"
        assert sup.stale_processes() == []
        now[0] += sup.stale_after_s + 1  # and then silent for too long: alive, not healthy
        assert sup.worker_counts() == (1, 0)
        assert sup.stale_processes() == sup.consumers()
    finally:
        sup.stop(grace_s=5)


#: a worker process that reports "starting", then "ready" once the file argv[1] exists.
TWO_REPORTS = """
import os, signal, sys, time
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
def report(state):
    line = '{"workers": [{"name": "w", "capabilities": ["a.x"], "state": "%s"}]}\\n' % state
    os.write(int(os.environ["CRANK_REPORT_FD"]), line.encode())
report("starting")
while not os.path.exists(sys.argv[1]):
    time.sleep(0.01)
report("ready")
time.sleep(600)
"""


def test_worker_health_is_folded_again_only_when_a_report_changes(
    broker: Broker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = tmp_path / "gate"
    config = RuntimeConfig(
        broker_url="memory://", min_workers=1, max_workers=1, monitor_interval_s=3600
    )
    sup = Supervisor(
        config,
        broker,
        command=lambda c, name: [sys.executable, "-c", TWO_REPORTS, str(gate)],
        workers={"w": ["a.x"]},
    )
    folds: list[int] = []
    fold = supervisor_module.fold_reports

    def counted(*args: Any) -> Any:
        folds.append(1)
        return fold(*args)

    sup.start()
    try:
        wait_for(lambda: sup.worker_counts() == (1, 1))  # its first report is in
        assert sup.worker_health()["w"].state == "starting"
        monkeypatch.setattr(supervisor_module, "fold_reports", counted)
        for _ in range(3):  # asked again and again (every request): the same reports
            assert sup.worker_health()["w"].state == "starting"
        assert folds == []
        gate.touch()
        wait_for(lambda: sup.worker_health()["w"].state == "ready")  # a new report
        assert folds
    finally:
        sup.stop(grace_s=5)


class Log:
    """A stand-in logger that keeps what was logged: (level, event, fields)."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any]]] = []

    def __getattr__(self, level: str) -> Any:
        def log(event: str, **fields: Any) -> None:
            self.lines.append((level, event, fields))

        return log

    def events(self, event: str) -> list[tuple[str, dict[str, Any]]]:
        return [(level, fields) for level, name, fields in self.lines if name == event]


#: a worker process whose one worker says it is not live ("deadlocked"), every 20 ms,
#: but live while the file argv[1] exists; exits on SIGTERM.
UNLIVE = """
import os, signal, sys, time
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
while True:
    live = os.path.exists(sys.argv[1])
    line = '{"workers": [{"name": "w", "capabilities": ["a.x"], "state": "ready", ' \\
        '"live": %s, "reason": %s}]}\\n' % (
            "true" if live else "false", "null" if live else '"deadlocked"')
    os.write(int(os.environ["CRANK_REPORT_FD"]), line.encode())
    time.sleep(0.02)
"""


def test_a_process_not_live_for_replace_unlive_s_is_stopped_and_replaced(
    broker: Broker, tmp_path: Path
) -> None:
    now = [1000.0]
    live = tmp_path / "live"
    log = Log()
    # the test drives the checks itself; the monitor thread stays asleep
    config = RuntimeConfig(
        broker_url="memory://",
        min_workers=1,
        max_workers=1,
        monitor_interval_s=3600,
        replace_unlive_s=60,
    )
    sup = Supervisor(
        config,
        broker,
        command=lambda c, name: [sys.executable, "-c", UNLIVE, str(live)],
        workers={"w": ["a.x"]},
        clock=lambda: now[0],
        log=log,
    )
    sup.start()
    try:
        (child,) = sup._children

        def reports(is_live: bool) -> bool:
            """A report as of now (the fake clock's) says live or not."""
            report = child.report
            fresh = child.reported_at == now[0]
            return fresh and report is not None and report.live is is_live

        def later(seconds: float) -> None:
            now[0] += seconds
            wait_for(lambda: child.reported_at == now[0])  # it keeps reporting

        wait_for(lambda: reports(False))
        assert sup.replace_unlive() == 0  # not live from now on
        later(59)
        assert sup.replace_unlive() == 0  # not for long enough yet
        live.touch()
        wait_for(lambda: reports(True))
        assert sup.replace_unlive() == 0  # live again: the count starts over
        live.unlink()
        wait_for(lambda: reports(False))
        assert sup.replace_unlive() == 0
        later(59.9)
        assert sup.replace_unlive() == 0
        later(0.1)
        assert sup.replace_unlive() == 1  # 60 s not live without a break
        assert sup.events.replaced_unlive == sup.replaced_unlive() == 1
        [(level, fields)] = log.events("worker_replaced_unlive")
        assert level == "error"
        assert (fields["consumer"], fields["pid"], fields["reason"]) == (
            child.consumer,
            child.proc.pid,
            "deadlocked",
        )
        # stopped as a stop does, and a replacement already started in its place
        assert child.stopping
        assert child.consumer not in sup.consumers()
        assert len(sup.consumers()) == 1
        assert child.proc.wait(timeout=30) == 0  # it took its SIGTERM
        sup.check_children()
        # asked to stop: no crash, no crash-loop streak, nothing owed
        assert (sup.events.died, sup.events.replaced, sup._crash_streak) == (0, 0, 0)
        assert sup.crashes() == 0
        assert sup.worker_counts()[0] == 1
        assert [e for _, e, _ in log.lines if e == "worker_stopped"] == ["worker_stopped"]
    finally:
        sup.stop(grace_s=5)


def test_a_hung_process_that_ignores_its_stop_is_killed_after_the_grace(
    broker: Broker, tmp_path: Path
) -> None:
    now = [1000.0]
    log = Log()
    # reports once, then nothing: hung; SIGTERM does nothing to it
    hung = (
        "import os, signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "os.write(int(os.environ['CRANK_REPORT_FD']), b'{\"workers\": []}\\n'); time.sleep(600)"
    )
    config = RuntimeConfig(
        broker_url="memory://",
        min_workers=1,
        max_workers=1,
        monitor_interval_s=3600,
        replace_unlive_s=5,
        grace_s=3,
    )
    sup = Supervisor(
        config,
        broker,
        command=lambda c, name: [sys.executable, "-c", hung],
        clock=lambda: now[0],
        log=log,
    )
    sup.start()
    try:
        (child,) = sup._children
        wait_for(lambda: child.report is not None)
        now[0] += sup.stale_after_s + 1  # silent too long: not live
        assert sup.replace_unlive() == 0
        now[0] += 5
        assert sup.replace_unlive() == 1
        [(_, fields)] = log.events("worker_replaced_unlive")
        assert fields["reason"].startswith("it has not reported its health check for ")
        now[0] += 3 + 1.9  # within the grace and its slack: left alone
        sup.check_children()
        assert child.alive
        now[0] += 0.1
        sup.check_children()  # past them: killed, reaped, not a crash
        assert child.proc.returncode == -signal.SIGKILL
        assert log.events("worker_killed_after_grace")
        assert child not in sup._children
        assert (sup.events.died, sup.events.replaced_unlive) == (0, 1)
        assert sup.worker_counts()[0] == 1  # its replacement
    finally:
        sup.stop(grace_s=1)


def test_replace_unlive_s_0_leaves_a_process_not_live_running(broker: Broker) -> None:
    now = [1000.0]
    config = RuntimeConfig(
        broker_url="memory://",
        min_workers=1,
        max_workers=1,
        monitor_interval_s=3600,
        replace_unlive_s=0,
    )
    sup = Supervisor(config, broker, command=sleeper, clock=lambda: now[0])
    sup.start()
    try:
        wait_for(lambda: sup.worker_counts() == (1, 1))
        (consumer,) = sup.consumers()
        now[0] += sup.stale_after_s + 1
        assert sup.replace_unlive() == 0
        now[0] += 86400
        assert sup.replace_unlive() == 0
        assert sup.consumers() == [consumer]
        assert sup.events.replaced_unlive == 0
    finally:
        sup.stop(grace_s=5)
