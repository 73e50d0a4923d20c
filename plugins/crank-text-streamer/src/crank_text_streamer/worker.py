"""The text-streamer worker: ``text.tokens`` yields each token as soon as it is found."""

from __future__ import annotations

import asyncio
import re
from typing import TYPE_CHECKING, Any

from crank.worker import WorkerApplication, capability
from crank_text_streamer.admission import StreamAdmission, max_streams

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    from crank.worker import TaskContext

PATTERNS = {
    "word": re.compile(r"\w+(?:['\u2019-]\w+)*"),
    "sentence": re.compile(r"[^.!?\s][^.!?]*(?:[.!?]+|$)"),
}


class TextStreamer(WorkerApplication):
    """Splits text into words or sentences and streams them as events, one by one.

    ``delay_ms`` paces the stream like a model generating tokens; ``sleep`` is the
    pacing function (tests swap in a manual clock).
    """

    admission: StreamAdmission
    sleep: Callable[[float], Awaitable[None]] = staticmethod(asyncio.sleep)

    def setup(self) -> None:
        self.admission = StreamAdmission(max_streams(type(self).manifest))

    @capability("text.tokens")
    async def tokens(self, data: dict[str, Any], ctx: TaskContext) -> AsyncIterator[dict[str, Any]]:
        unit = data.get("unit", "word")
        delay = float(data.get("delay_ms", 0)) / 1000.0
        count = 0
        for match in PATTERNS[unit].finditer(data["text"]):
            ctx.check_cancelled()
            if count and delay:
                await self.sleep(delay)
            token = match.group(0).rstrip()
            yield {
                "type": "token",
                "index": count,
                "token": token,
                "start": match.start(),
                "end": match.start() + len(token),
            }
            count += 1
        yield {"type": "done", "count": count, "unit": unit}

    @capability("text.slow_echo")
    async def slow_echo(self, data: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        # Stands for awaiting a remote service; while it waits, the worker process's
        # event loop runs the other calls in flight (``concurrency: 50``).
        await self.sleep(float(data.get("delay_ms", 100)) / 1000.0)
        text = data["text"]
        return {"text": text, "words": len(PATTERNS["word"].findall(text))}
