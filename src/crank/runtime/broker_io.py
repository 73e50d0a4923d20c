"""The HTTP server's broker calls: one I/O thread, submits grouped, nothing on the event loop.

Requests hand their broker work to one dedicated thread instead of Starlette's
thread pool: no thread hop per call through a pool, no blocking call on the event
loop, and concurrent submits share a round trip. The thread takes everything
queued when it wakes: the submits as one ``submit_many`` (one Redis round trip,
one SQLite transaction: a group commit), then the reads. A lone request is sent
at once (nothing waits to fill a batch); under load, the requests that arrive
while one batch is with the broker make up the next one, so batches grow exactly
when round trips are the bottleneck.

The hand-over costs one wake-up of the thread per turn of the event loop, not one
per request: the jobs of the requests that reached their broker call in the same
turn go over together. Each request's answer goes back to its event loop in one
thread-safe callback per batch, not one per request.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from crank.runtime.brokers.contract import TaskRecord

if TYPE_CHECKING:
    from collections.abc import Callable

    from crank.runtime.brokers.contract import Broker, Submitted, TaskSpec

#: the most submits sent in one round trip.
MAX_BATCH = 256


@dataclass
class _Job:
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    #: a submit (spec, watch) or any other call.
    spec: TaskSpec | None = None
    watch: bool = False
    call: Callable[[], Any] | None = None


@dataclass
class BatchStats:
    """How the submits were grouped (tests and benchmarks read it)."""

    submits: int = 0
    round_trips: int = 0
    largest: int = 0
    sizes: list[int] = field(default_factory=list)


def _settle(items: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
    for future, ok, value in items:
        if future.done():  # the request went away (client gone, cancelled)
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)


class BrokerIO:
    """One thread doing a server process's broker calls (see the module docstring)."""

    def __init__(
        self,
        broker: Broker,
        *,
        max_batch: int = MAX_BATCH,
        on_submitted: Callable[[int], None] | None = None,
    ) -> None:
        self.broker = broker
        #: told how many tasks each submit queued, on the I/O thread, before the next job.
        self.on_submitted = on_submitted
        self.max_batch = max_batch
        self.stats = BatchStats()
        self._jobs: queue.SimpleQueue[list[_Job] | None] = queue.SimpleQueue()
        #: jobs of this turn of the event loop, handed over together at its end.
        self._turn: list[_Job] = []
        self._thread = threading.Thread(target=self._run, name="crank-broker-io", daemon=True)
        self._closed = False
        self._thread.start()

    # -- what requests call --------------------------------------------------------------

    async def submit(self, spec: TaskSpec, *, watch: bool = False) -> Submitted:
        """Queue one task, grouped with the submits of concurrent requests."""
        loop = asyncio.get_running_loop()
        job = _Job(loop, loop.create_future(), spec=spec, watch=watch)
        self._put(job)
        result: Submitted = await job.future
        return result

    async def call(self, function: Callable[[], Any]) -> Any:
        """Run ``function`` (a blocking broker call) on the I/O thread."""
        loop = asyncio.get_running_loop()
        job = _Job(loop, loop.create_future(), call=function)
        self._put(job)
        return await job.future

    async def get(self, task_id: str) -> TaskRecord | None:
        record: TaskRecord | None = await self.call(lambda: self.broker.get(task_id))
        return record

    def _put(self, job: _Job) -> None:
        if self._closed:
            raise RuntimeError("the broker I/O thread is closed")
        if not self._turn:
            job.loop.call_soon(self._hand_over)
        self._turn.append(job)

    def _hand_over(self) -> None:
        """Wake the thread once for every job this turn of the event loop made."""
        jobs, self._turn = self._turn, []
        self._jobs.put(jobs)

    # -- the thread ------------------------------------------------------------------------

    def _run(self) -> None:
        jobs = self._jobs
        while True:
            first = jobs.get()
            if first is None:
                return
            batch = list(first)
            try:
                while len(batch) < self.max_batch:
                    more = jobs.get_nowait()
                    if more is None:
                        jobs.put(None)  # stop after this batch
                        break
                    batch += more
            except queue.Empty:
                pass
            for start in range(0, len(batch), self.max_batch):
                self._serve(batch[start : start + self.max_batch])

    def _serve(self, batch: list[_Job]) -> None:
        answers: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], bool, Any]]] = {}

        def answer(job: _Job, ok: bool, value: Any) -> None:
            answers.setdefault(job.loop, []).append((job.future, ok, value))

        for watch in (True, False):
            submits = [job for job in batch if job.spec is not None and job.watch is watch]
            if submits:
                self._submit(submits, watch, answer)
        for job in batch:
            if job.call is not None:
                try:
                    answer(job, True, job.call())
                except Exception as exc:
                    answer(job, False, exc)
        for loop, items in answers.items():
            try:
                loop.call_soon_threadsafe(_settle, items)
            except RuntimeError:  # that loop closed: nobody waits any more
                continue

    def _submit(
        self, jobs: list[_Job], watch: bool, answer: Callable[[_Job, bool, Any], None]
    ) -> None:
        specs = [job.spec for job in jobs if job.spec is not None]
        try:
            records = self.broker.submit_many(specs, watch=watch)
        except Exception as exc:
            for job in jobs:
                answer(job, False, exc)
            return
        stats = self.stats
        stats.submits += len(specs)
        stats.round_trips += 1
        stats.largest = max(stats.largest, len(specs))
        if len(stats.sizes) < 10_000:
            stats.sizes.append(len(specs))
        created = sum(1 for record in records if isinstance(record, TaskRecord))
        if self.on_submitted is not None and created:
            self.on_submitted(created)
        for job, record in zip(jobs, records, strict=True):
            answer(job, True, record)

    def close(self) -> None:
        """Finish what is queued, then stop the thread."""
        if self._closed:
            return
        self._closed = True
        self._jobs.put(None)
        self._thread.join(timeout=10)


__all__ = ["MAX_BATCH", "BatchStats", "BrokerIO"]
