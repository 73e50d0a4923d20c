"""Throughput over the last minutes: readings of the outcome counters compared.

The counters and the clock are given by the test: this is arithmetic over two
readings (the real counters of worker processes are read in test_console_run.py).
"""

from __future__ import annotations

from crank.runtime.console.throughput import OutcomeWindow


class Counters:
    def __init__(self) -> None:
        self.now = 1000.0
        self.counts: dict[tuple[str, str], float] = {}

    def add(self, capability: str, status: str, n: int) -> None:
        key = (capability, status)
        self.counts[key] = self.counts.get(key, 0.0) + n


def test_no_rate_until_two_readings_are_far_enough_apart() -> None:
    c = Counters()
    window = OutcomeWindow(lambda: c.counts, window_s=300, min_gap_s=5, clock=lambda: c.now)
    c.add("a", "succeeded", 3)
    c.now += 1
    assert window.rates() is None


def test_rates_per_capability_and_failure_ratio_over_the_span() -> None:
    c = Counters()
    window = OutcomeWindow(lambda: c.counts, window_s=300, min_gap_s=5, clock=lambda: c.now)
    c.add("a", "succeeded", 30)
    c.add("a", "failed", 5)
    c.add("a", "retrying", 3)
    c.add("a", "dead", 2)
    c.add("b", "succeeded", 6)
    c.now += 60
    rates = window.rates()
    assert rates is not None and rates.span_s == 60
    a, b = rates.capabilities
    assert (a.capability, a.succeeded, a.failed, a.retrying, a.dead) == ("a", 30, 5, 3, 2)
    assert a.failure_ratio == 10 / 40
    assert (b.capability, b.attempts, b.failure_ratio) == ("b", 6, 0.0)
    total = rates.total
    assert (total.succeeded, total.attempts) == (36, 46)
    assert rates.per_minute(total.succeeded) == 36.0


def test_old_readings_leave_the_window_and_the_span_says_how_long_it_covers() -> None:
    c = Counters()
    window = OutcomeWindow(lambda: c.counts, window_s=300, min_gap_s=5, clock=lambda: c.now)
    for _ in range(10):  # a reading a minute, 10 tasks a minute
        c.now += 60
        c.add("a", "succeeded", 10)
        window.rates()
    rates = window.rates()
    assert rates is not None
    # the oldest reading kept is the newest one at least 300 s old: 5 minutes, 50 tasks
    assert (rates.span_s, rates.total.succeeded) == (300, 50)
    # nobody looked for an hour: the rate is over the hour, and says so
    c.now += 3600
    c.add("a", "succeeded", 60)
    rates = window.rates()
    assert rates is not None
    assert (rates.span_s, rates.total.succeeded) == (3600, 60)
    assert rates.per_minute(rates.total.succeeded) == 1.0


def test_a_counter_that_went_down_counts_nothing() -> None:
    c = Counters()
    c.add("a", "succeeded", 10)
    window = OutcomeWindow(lambda: c.counts, window_s=300, min_gap_s=5, clock=lambda: c.now)
    c.counts = {("a", "succeeded"): 4.0}
    c.now += 30
    rates = window.rates()
    assert rates is not None and rates.total.succeeded == 0
    assert rates.capabilities[0].failure_ratio is None
