"""The in-memory broker's exact claim order, beyond what the shared contract checks."""

from __future__ import annotations

import random

from crank.runtime.brokers.contract import ClaimOptions, TaskSpec
from crank.runtime.brokers.memory import MemoryBroker

CAPABILITIES = ("demo.a", "demo.b", "demo.c")


def test_claim_order_holds_across_priorities_and_give_backs_with_many_tasks() -> None:
    rng = random.Random(7)
    priorities = [rng.randrange(-2, 5) for _ in range(2_000)]
    capabilities = [rng.choice(CAPABILITIES) for _ in priorities]
    broker = MemoryBroker(retry_base_s=0.0)  # a failed task is due again at once
    for start in range(0, len(priorities), 100):  # a batch shares one created_at
        broker.submit_many(
            [
                TaskSpec(capabilities[n], {"n": n}, priority=priorities[n], max_attempts=5)
                for n in range(start, start + 100)
            ]
        )
    # higher priority first, then oldest (submission order)
    order = sorted(range(len(priorities)), key=lambda n: (-priorities[n], n))

    taken = [c for _ in range(30) for c in broker.claim(ClaimOptions("w1", limit=10))]
    assert [c.task.payload["n"] for c in taken] == order[:300]
    broker.ack_many([(c, {}) for c in taken[:100]])
    broker.release(taken[100:200])  # back to their places, attempt not counted
    broker.fail(taken[200], {"code": "E", "message": "", "type": "E"}, retryable=True)
    assert broker.recover("w1") == 99  # back to their places, attempt counted
    acked = {c.task.payload["n"] for c in taken[:100]}
    retried = taken[200].task.payload["n"]
    recovered = {c.task.payload["n"] for c in taken[201:]}
    # a retry is as old as its backoff's end: last of its priority
    queue = sorted(set(order) - acked, key=lambda n: (-priorities[n], n == retried, n))

    # leases that expired (a zero visibility timeout) are delivered before everything else
    leased = broker.claim(
        ClaimOptions("w2", capabilities=("demo.c",), limit=2, visibility_timeout_s=0)
    )
    lost = [c.task.payload["n"] for c in leased]
    assert lost == [n for n in queue if capabilities[n] == "demo.c"][:2]

    drained = []
    while claims := broker.claim(ClaimOptions("w3", limit=7)):
        drained += claims
    assert [c.task.payload["n"] for c in drained] == lost + [n for n in queue if n not in lost]
    # the recovered, retried and lost deliveries count; released ones do not
    attempt = {n: 1 + (n in recovered or n == retried) + (n in lost) for n in queue}
    assert {c.task.payload["n"]: c.attempt for c in drained} == attempt
