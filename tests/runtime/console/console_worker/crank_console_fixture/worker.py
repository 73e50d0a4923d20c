"""Echo; hold the worker until a file exists; mark that a task ran; fail until a file exists."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crank.worker import WorkerApplication, capability

if TYPE_CHECKING:
    from crank.worker import TaskContext

HOLD_S = 120.0


class ConsoleFixture(WorkerApplication):
    @capability("ops.echo")
    def echo(self, data: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        text = str(data["text"])
        return {"text": text.upper() if data.get("shout") else text}

    @capability("ops.hold")
    def hold(self, data: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        gate = Path(data["gate"])
        deadline = time.monotonic() + HOLD_S
        while not gate.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        return {"opened": gate.exists()}

    @capability("ops.mark")
    def mark(self, data: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        Path(data["mark"]).write_text(ctx.task_id, encoding="utf-8")
        return {"ran": True}

    @capability("ops.reindex")
    def reindex(self, data: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        index = Path(data["index"])
        if not index.exists():
            raise RuntimeError(f"the index file {index.name} is missing")
        return {"entries": len(index.read_text(encoding="utf-8").split())}
