"""A 10x burst against a live ``crank run``: 429 + Retry-After, a bounded queue, bounded memory."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.slow

MAX_PENDING = 50
MAX_INFLIGHT = 8


def metric_samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """(sample name, sorted labels) -> value, read with prometheus-client's own parser."""
    from prometheus_client.parser import text_string_to_metric_families

    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def burst(url: str, total: int, concurrency: int) -> tuple[Counter[int], set[str]]:
    codes: Counter[int] = Counter()
    retry_after: set[str] = set()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        sem = asyncio.Semaphore(concurrency)

        async def one(i: int) -> None:
            async with sem:
                body = {"capability": "demo.slow", "input": {"seconds": 0.2}, "priority": 0}
                r = await client.post("/v1/tasks", json=body)
                codes[r.status_code] += 1
                if r.status_code == 429:
                    retry_after.add(r.headers["retry-after"])

        await asyncio.gather(*(one(i) for i in range(total)))
    return codes, retry_after


def test_ten_x_burst_is_shed_with_429_and_memory_stays_bounded(crank_run: Any) -> None:
    run = crank_run(
        "--min-workers", "1", "--max-workers", "1",
        env={"CRANK_MAX_PENDING": str(MAX_PENDING), "CRANK_MAX_INFLIGHT": str(MAX_INFLIGHT)},
    )  # fmt: skip
    before = rss_kib(run.pid)
    codes, retry_after = asyncio.run(burst(run.url, total=10 * MAX_PENDING * 2, concurrency=64))
    after = rss_kib(run.pid)
    pending = run.http.get("/v1/status").json()["queue_health"]["total_pending_tasks"]
    print(f"burst answers {dict(codes)}; RSS {before} -> {after} KiB; pending {pending}")
    assert set(codes) <= {202, 429}, codes
    assert codes[429] > 0
    assert codes[202] >= MAX_PENDING
    assert retry_after == {"1"}
    # the queue holds at most max pending plus what in-flight requests were admitting
    assert pending <= MAX_PENDING + MAX_INFLIGHT
    # refused requests are not buffered: memory grows by a bounded amount, not per request
    assert after - before < 64 * 1024, (before, after)
    # /metrics counts exactly the answers the clients saw, and why they were refused
    samples = metric_samples(run.http.get("/metrics").text)
    answered = {
        status: samples.get(
            (
                "crank_http_requests_total",
                (("method", "POST"), ("route", "/v1/tasks"), ("status", status)),
            )
        )
        for status in ("202", "429")
    }
    assert answered == {"202": codes[202], "429": codes[429]}
    overloaded = samples.get(("crank_requests_rejected_total", (("reason", "overload"),)), 0)
    assert overloaded <= codes[429]  # the rest were refused for the full queue
    assert run.terminate() == 0
