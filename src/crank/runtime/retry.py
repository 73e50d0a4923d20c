"""Backoff of retried tasks: exponential with full jitter, capped."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    """Delay before attempt ``n + 1`` after ``n`` failed attempts.

    ``base_s * 2 ** (n - 1)`` capped at ``max_s``, then "full jitter" (a uniform
    draw in ``[delay / 2, delay]``) so a burst of failures does not come back
    as a burst.
    """

    base_s: float = 0.5
    max_s: float = 60.0

    def delay_s(self, failed_attempts: int, rng: random.Random | None = None) -> float:
        exponent = max(0, failed_attempts - 1)
        delay = min(self.max_s, self.base_s * (2.0 ** min(exponent, 30)))
        draw = (rng or _RNG).random()
        return delay / 2.0 + draw * delay / 2.0


_RNG = random.Random()  # noqa: S311 - jitter, not cryptography
