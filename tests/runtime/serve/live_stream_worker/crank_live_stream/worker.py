"""A streaming handler the test holds between its two events."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crank.worker import WorkerApplication, capability

if TYPE_CHECKING:
    from collections.abc import Iterator

    from crank.worker import TaskContext

GATE_WAIT_S = 20.0


class LiveStream(WorkerApplication):
    @capability("demo.gated")
    def gated(self, data: dict[str, Any], ctx: TaskContext) -> Iterator[dict[str, Any]]:
        yield {"step": 1}
        gate = Path(str(data["gate"]))
        deadline = time.monotonic() + GATE_WAIT_S
        while not gate.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        yield {"step": 2, "gate_opened": gate.exists()}
