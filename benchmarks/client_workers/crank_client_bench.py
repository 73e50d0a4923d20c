"""crank's side of the client benchmark: echo the text."""

from __future__ import annotations

from typing import Any

from crank.worker import TaskContext, WorkerApplication, capability


class ClientBench(WorkerApplication):
    @capability("bench.echo")
    def echo(self, data: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        return {"text": data["text"]}
