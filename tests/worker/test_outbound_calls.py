"""Retry with backoff + jitter (tenacity) and shared circuit breakers (pybreaker)."""

from __future__ import annotations

import pybreaker
import pytest

from crank.worker import TaskContext
from crank.worker.outbound_calls import circuit_breaker, reset_circuit_breakers, retrying


@pytest.fixture(autouse=True)
def _fresh_breakers() -> None:
    reset_circuit_breakers()


class Flaky:
    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    def __call__(self, value: int) -> int:
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionError(f"failure {self.calls}")
        return value * 2


def test_retry_until_success_with_growing_jittered_waits() -> None:
    waits: list[float] = []
    flaky = Flaky(failures=3)
    policy = retrying(attempts=5, base_s=0.1, max_s=10, sleep=waits.append)
    assert policy(flaky, 21) == 42
    assert flaky.calls == 4
    assert len(waits) == 3
    for n, wait in enumerate(waits):
        assert 0.1 * 2**n <= wait <= 0.1 * 2**n + 0.1  # exponential plus up to base_s of jitter


def test_retry_gives_up_and_reraises_the_last_error() -> None:
    flaky = Flaky(failures=10)
    with pytest.raises(ConnectionError, match="failure 3"):
        retrying(attempts=3, sleep=lambda s: None)(flaky, 1)


def test_retry_skips_errors_not_listed() -> None:
    def bad() -> None:
        raise KeyError("x")

    calls = Flaky(0)
    with pytest.raises(KeyError):
        retrying(attempts=3, retry_on=(ConnectionError,), sleep=lambda s: None)(
            lambda: (calls(1), bad())
        )
    assert calls.calls == 1


def test_ctx_retry_respects_the_deadline() -> None:
    ctx = TaskContext.for_call("a.x", timeout_s=0.05)
    flaky = Flaky(failures=100)
    with pytest.raises(ConnectionError, match="failure 1"):
        ctx.retry(flaky, 1, attempts=50)
    # the first wait (at least 0.2 s) would pass the 0.05 s left: no second try
    assert flaky.calls == 1


def test_retry_waits_only_while_the_deadline_allows() -> None:
    left = [1.0]
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        left[0] -= seconds

    flaky = Flaky(failures=100)
    policy = retrying(attempts=50, base_s=0.1, deadline=lambda: left[0], sleep=sleep)
    with pytest.raises(ConnectionError):
        policy(flaky, 1)
    # waits of 0.1-0.2, 0.2-0.3, 0.4-0.5 s fit in the second; the next (0.8-0.9) does not
    assert 2 <= len(waits) <= 3
    assert flaky.calls == len(waits) + 1
    assert sum(waits) <= 1.0


def test_ctx_retrying_decorator() -> None:
    ctx = TaskContext(capability="a.x")
    flaky = Flaky(failures=1)

    @ctx.retrying(attempts=3, base_s=0.001)
    def call() -> int:
        return flaky(5)

    assert call() == 10


def test_breaker_opens_after_failures_and_is_shared_per_name() -> None:
    first = TaskContext(capability="a.x").circuit_breaker(
        "provider", fail_max=2, reset_timeout_s=60
    )
    second = TaskContext(capability="b.y").circuit_breaker("provider")
    assert first is second
    assert circuit_breaker("other") is not first
    flaky = Flaky(failures=100)
    with pytest.raises(ConnectionError):
        first.call(flaky, 1)
    with pytest.raises((ConnectionError, pybreaker.CircuitBreakerError)):
        first.call(flaky, 1)
    assert second.current_state == "open"
    calls = flaky.calls
    with pytest.raises(pybreaker.CircuitBreakerError):
        second.call(flaky, 1)
    assert flaky.calls == calls  # the provider was not called


def test_retry_does_not_hammer_an_open_breaker() -> None:
    breaker = circuit_breaker("down", fail_max=1, reset_timeout_s=60)
    flaky = Flaky(failures=100)
    ctx = TaskContext(capability="a.x")
    with pytest.raises((ConnectionError, pybreaker.CircuitBreakerError)):
        ctx.retry(breaker.call, flaky, 1, attempts=5)
    assert flaky.calls == 1
    # the same policy with its waits recorded: it gives up at once, no backoff slept
    waits: list[float] = []
    with pytest.raises(pybreaker.CircuitBreakerError):
        retrying(attempts=5, sleep=waits.append)(breaker.call, flaky, 1)
    assert (waits, flaky.calls) == ([], 1)
