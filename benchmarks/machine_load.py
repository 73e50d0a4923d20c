"""Is the machine quiet enough to report a ratio? The load average, read before and after.

Short processes and round trips on a busy machine measure the machine, not the code:
every ratio gets squeezed toward 1. A benchmark prints the load average and, when the
1-minute load is above ``BUSY_PER_CORE`` per core at the start or at the end, prints
its numbers but refuses to state a ratio against a goal.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

#: 1-minute load average per core above which a ratio is not reported.
BUSY_PER_CORE = 0.5


@dataclass(frozen=True)
class Load:
    one_minute: float
    cores: int

    @property
    def busy(self) -> bool:
        return self.one_minute > BUSY_PER_CORE * self.cores

    def __str__(self) -> str:
        return f"{self.one_minute:.2f} on {self.cores} cores"


def load_now() -> Load:
    return Load(os.getloadavg()[0], os.cpu_count() or 1)


def verdict(before: Load, after: Load) -> str | None:
    """None when quiet enough; else why ratios are withheld."""
    if before.busy or after.busy:
        return (
            f"machine busy (load {before} at the start, {after} at the end; a ratio needs "
            f"at most {BUSY_PER_CORE:g} per core): numbers printed, ratios withheld"
        )
    return None
