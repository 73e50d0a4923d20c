"""The pending count behind ``CRANK_MAX_PENDING``: read beside the submits, not in their way.

Counting a deep queue takes a while (tens of milliseconds for 200,000 SQLite tasks).
The count was read on the broker I/O thread every quarter second, and every submit
queued behind it waited: with 200,000 tasks queued, ``POST /v1/tasks`` ran 273 req/s
instead of 6,300. Here the queue's ``stats()`` is held (an event) to stand for a slow
count, on a real server over real HTTP.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

from crank.runtime.brokers.contract import ClaimOptions, TaskSpec

from .conftest import WAIT_S

if TYPE_CHECKING:
    from crank.runtime.brokers.contract import QueueStats


class HeldCount:
    """The broker's ``stats()``, held until ``release`` is set; counts the reads."""

    def __init__(self, broker: Any) -> None:
        self.real = broker.stats
        self.entered = threading.Event()
        self.release = threading.Event()
        self.returned = threading.Event()
        self.reads = 0
        broker.stats = self

    def __call__(self) -> QueueStats:
        self.reads += 1
        self.entered.set()
        self.release.wait(WAIT_S)
        stats = self.real()
        self.returned.set()
        return stats


def post(http: Any, text: str) -> int:
    body = {"capability": "demo.echo", "input": {"text": text}}
    return int(http.post("/v1/tasks", json=body).status_code)


def until(check: Any, what: str) -> None:
    """Wait for ``check()`` to hold (a state, polled), failing after ``WAIT_S``."""
    deadline = time.monotonic() + WAIT_S
    while not check():
        if time.monotonic() >= deadline:
            raise AssertionError(what)
        time.sleep(0.005)


def settled(services: Any) -> None:
    """Until no count read by an earlier request is still under way."""

    def ended() -> bool:
        read = services.gateway._stats_read
        return read is None or read.done()

    until(ended, "a count read never ended")


def in_thread(call: Any) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []
    thread = threading.Thread(target=lambda: out.append(call()), daemon=True)
    thread.start()
    return thread, out


def test_submits_go_on_while_the_count_is_read(make_services: Any, serve: Any) -> None:
    services = make_services(max_pending_tasks=1000)
    services.status.ttl_s = 0.0  # every request finds the count stale
    held = HeldCount(services.broker)
    http = serve(services)
    try:
        thread, codes = in_thread(lambda: [post(http, str(i)) for i in range(5)])
        thread.join(timeout=WAIT_S)
        assert not thread.is_alive(), "the submits waited for the count"
        assert codes == [[202] * 5]
        assert held.entered.is_set() and not held.returned.is_set()
        assert held.reads == 1, "one read at a time, however many requests find it stale"
    finally:
        held.release.set()


def test_a_request_the_count_would_refuse_waits_for_a_fresh_one(
    make_services: Any, serve: Any
) -> None:
    services = make_services(max_pending_tasks=3)
    services.status.ttl_s = 0.0
    http = serve(services)
    assert [post(http, str(i)) for i in range(3)] == [202, 202, 202]
    # the three are done (as a worker would): the queue is empty, the cached count not
    for claim in services.broker.claim(ClaimOptions("w1", limit=10)):
        services.broker.ack(claim, {"text": "done"})
    settled(services)
    held = HeldCount(services.broker)
    try:
        thread, codes = in_thread(lambda: post(http, "at the bound"))
        assert held.entered.wait(WAIT_S), "no fresh count was read"
        held.release.set()
        thread.join(timeout=WAIT_S)
        assert codes == [202], "refused on the cached count"
        # it was answered after the count it waited for, never before
        assert held.returned.is_set()
    finally:
        held.release.set()


def test_submits_made_while_the_count_was_read_do_not_refuse_a_request(
    make_services: Any, serve: Any
) -> None:
    """A read begins, a submit lands, the read counts it: that task is in the stats and
    among the submits made since the read began. A count over the bound only by such
    submits is read again before it refuses (three sequential requests under a bound
    of three were refused at the third on a busy machine)."""
    services = make_services(max_pending_tasks=3)
    services.status.ttl_s = 0.0
    http = serve(services)
    submit_many = services.broker.submit_many
    read: list[HeldCount] = []

    def after_the_read_began(*args: Any, **kwargs: Any) -> Any:
        assert read[-1].entered.wait(WAIT_S)
        return submit_many(*args, **kwargs)

    services.broker.submit_many = after_the_read_began
    first = HeldCount(services.broker)
    read.append(first)
    try:
        # a read begins (held) before the first submit lands and counts it when let go
        thread, codes = in_thread(lambda: post(http, "1"))
        assert first.entered.wait(WAIT_S)
        thread.join(timeout=WAIT_S)
        first.release.set()
        settled(services)
        assert codes == [202]
        second = HeldCount(services.broker)
        read.append(second)
        # again for the second: cached, 1 task + 2 submits since its read began
        thread, codes = in_thread(lambda: post(http, "2"))
        assert second.entered.wait(WAIT_S)
        thread.join(timeout=WAIT_S)
        assert codes == [202]
        # the third finds 3 (1 + 2 - 0) and waits for the read under way: 2 + 2 - 1
        at_bound = threading.Event()
        counted = services.status.pending_total

        def watched(*, wait: bool = True) -> int:
            pending = int(counted(wait=wait))
            if pending >= 3:
                at_bound.set()
            return pending

        services.status.pending_total = watched
        thread, codes = in_thread(lambda: post(http, "3"))
        assert at_bound.wait(WAIT_S), "the cached count did not reach the bound"
        second.release.set()  # the request awaits the read next, with no step between
        thread.join(timeout=WAIT_S)
        assert codes == [202], "refused on submits counted twice"
        assert counted() == 3
        # the bound still holds: the queue has three
        assert post(http, "4") == 429
    finally:
        for held in read:
            held.release.set()


def test_a_full_queue_is_refused_on_a_fresh_count(make_services: Any, serve: Any) -> None:
    services = make_services(max_pending_tasks=2)
    services.status.ttl_s = 0.0
    http = serve(services)
    assert [post(http, str(i)) for i in range(4)] == [202, 202, 429, 429]
    settled(services)
    held = HeldCount(services.broker)
    held.release.set()
    assert post(http, "still full") == 429
    assert held.reads >= 1


def test_a_status_asked_during_a_count_waits_for_that_count(make_services: Any, serve: Any) -> None:
    """/v1/status asked while the stats are being read answers from that read (the
    truth as of now), neither from the stale cache nor by starting a second read."""
    services = make_services()
    services.status.ttl_s = 0.0
    http = serve(services)
    held = HeldCount(services.broker)
    try:
        reader, _ = in_thread(services.status.queue_stats)
        assert held.entered.wait(WAIT_S)
        services.broker.submit_many([TaskSpec("demo.echo", {"text": "queued"})])
        probe, answers = in_thread(lambda: http.get("/v1/status").json())
        waiters = services.status._read_ended._waiters  # the request, waiting for the read
        until(lambda: bool(waiters), "the status did not wait for the read under way")
        assert not answers
        held.release.set()
        probe.join(timeout=WAIT_S)
        reader.join(timeout=WAIT_S)
        assert len(answers) == 1
        # the read it waited for ran after the submit: it counts the queued task
        queue = answers[0]["queue_health"]
        assert queue["pending_by_capability"] == {"demo.echo": 1}, queue
        assert held.reads == 1
    finally:
        held.release.set()
