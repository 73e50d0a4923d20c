"""``text.slow_echo``: an async handler awaiting a slow service; many calls wait at once."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from crank.testing import WorkerHandle


def test_answers_the_text_and_its_words(worker: WorkerHandle) -> None:
    answer = worker.call("text.slow_echo", {"text": "hello there, world", "delay_ms": 0})
    assert answer == {"text": "hello there, world", "words": 3}


def test_fifty_calls_wait_on_the_service_at_once(worker: WorkerHandle) -> None:
    # the "service" answers only once all fifty calls are waiting on it: if the handler
    # held the event loop (a blocking sleep), the first call would never return
    waiting = 0
    all_waiting = asyncio.Event()

    async def service(seconds: float) -> None:
        nonlocal waiting
        waiting += 1
        if waiting == 50:
            all_waiting.set()
        await all_waiting.wait()

    worker.app.sleep = service  # type: ignore[attr-defined]

    async def fifty() -> list[Any]:
        calls = [worker.acall("text.slow_echo", {"text": f"call {i}"}) for i in range(50)]
        return await asyncio.wait_for(asyncio.gather(*calls), timeout=60)

    answers = asyncio.run(fifty())
    assert [a["text"] for a in answers] == [f"call {i}" for i in range(50)]
    assert waiting == 50
