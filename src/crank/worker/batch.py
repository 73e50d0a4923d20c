"""Batch handlers: the item they receive, and the rules a handler must fit.

A capability with ``batching:`` in its manifest is served by a batch handler,
``@capability(id, batch=True)``, called with a list of :class:`BatchItem` and
returning one output per item, in order. :func:`handler_misfits` compares a worker
class with its manifest (batching, concurrency, streaming against the kind of
handler); the worker host refuses a worker that does not fit and ``crank lint``
reports each misfit at its capability (CRK115; a streaming capability with batching
or concurrency is CRK114).
"""

from __future__ import annotations

import inspect
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from crank.worker.context import TaskCancelled, TaskContext

if TYPE_CHECKING:
    from collections.abc import Sequence

    from crank.manifest import Manifest
    from crank.worker.app import WorkerApplication


@dataclass(frozen=True)
class BatchItem:
    """One task of a batch: its input (validated against the input schema) and its own
    task context (``ctx.task_id``, ``ctx.deadline``, ``ctx.caller``, ``ctx.errors``)."""

    data: dict[str, Any]
    ctx: TaskContext


class BatchScope:
    """The cancellation scope of a whole batch: cancelled once every item is.

    An async batch handler is cancelled when the last of its items' deadlines passes
    (or every item was cancelled); an item whose own deadline passes earlier still
    gets the batch's answer if the handler returns before then.
    """

    def __init__(self, items: Sequence[BatchItem]) -> None:
        self.items = tuple(items)

    def time_left(self) -> float | None:
        lefts = [item.ctx.time_left() for item in self.items]
        if not lefts or any(left is None for left in lefts):
            return None
        return max(left for left in lefts if left is not None)

    @property
    def cancelled(self) -> bool:
        return all(item.ctx.cancelled for item in self.items)

    def check_cancelled(self) -> None:
        if self.cancelled:
            ids = ", ".join(item.ctx.task_id for item in self.items)
            raise TaskCancelled(f"every task of the batch ({ids}) was cancelled or timed out")

    @property
    def deadline(self) -> float | None:
        left = self.time_left()
        return None if left is None else time.monotonic() + left


@dataclass(frozen=True)
class Misfit:
    """A capability whose handler does not fit what its manifest declares."""

    capability: str
    #: the manifest key the misfit is about (``batching``, ``concurrency``, ``streaming``).
    key: str
    message: str
    hint: str


def _required_positional(func: Any) -> int | None:
    """How many positional parameters ``func`` needs besides ``self`` (None: unknown)."""
    try:
        params = list(inspect.signature(func).parameters.values())
    except (TypeError, ValueError):
        return None
    if params and inspect.isfunction(func):
        params = params[1:]  # looked up on the class: the first one is self
    kinds = inspect.Parameter
    if any(p.kind is kinds.VAR_POSITIONAL for p in params):
        return None  # *args takes anything
    positional = (kinds.POSITIONAL_ONLY, kinds.POSITIONAL_OR_KEYWORD)
    return sum(1 for p in params if p.kind in positional and p.default is kinds.empty)


def handler_misfits(manifest: Manifest, cls: type[WorkerApplication]) -> list[Misfit]:
    """Every declared capability whose handler does not fit its ``batching`` or
    ``concurrency`` (capabilities without a handler are not looked at:
    :func:`~crank.worker.host.check_handlers` reports those)."""
    handlers = cls.handlers()
    batch = cls.batch_handlers()
    found: list[Misfit] = []
    for cap in manifest.capabilities:
        name = handlers.get(cap.id)
        if name is None:
            continue
        func = getattr(cls, name)
        where = f"{cls.__qualname__}.{name}"
        is_batch = cap.id in batch
        is_async = inspect.iscoroutinefunction(func)
        is_generator = inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func)
        if cap.batching is not None and not is_batch:
            found.append(
                Misfit(
                    cap.id,
                    "batching",
                    f"{cap.id} declares batching but its handler {where} takes one input",
                    hint=f"mark it @capability({cap.id!r}, batch=True) and take a list of "
                    "BatchItem (returning one output per item), or remove `batching:`",
                )
            )
        if is_batch and cap.batching is None:
            found.append(
                Misfit(
                    cap.id,
                    "batching",
                    f"{where} is a batch handler but {cap.id} declares no batching",
                    hint="add `batching: {max_batch_size: N, max_latency_ms: M}` to the "
                    f"capability, or drop batch=True from @capability({cap.id!r})",
                )
            )
        if is_batch:
            wanted = _required_positional(func)
            if is_generator:
                found.append(
                    Misfit(
                        cap.id,
                        "batching",
                        f"batch handler {where} is a generator; a batch handler returns a "
                        "list with one output per item",
                        hint="return a list (streaming capabilities cannot be batched)",
                    )
                )
            elif wanted is not None and wanted != 1:
                found.append(
                    Misfit(
                        cap.id,
                        "batching",
                        f"batch handler {where} takes {wanted} arguments; it is called with "
                        "one, the list of items (each item carries its input and context)",
                        hint=f"def {name}(self, items: list[BatchItem]) -> list[...]: one "
                        "output per item, in the same order",
                    )
                )
        if cap.concurrency > 1 and not is_async:
            kind = "an async generator" if inspect.isasyncgenfunction(func) else "not async"
            found.append(
                Misfit(
                    cap.id,
                    "concurrency",
                    f"{cap.id} declares concurrency: {cap.concurrency} but its handler {where} "
                    f"is {kind}; a worker process runs several tasks at once only on an "
                    "event loop",
                    hint=f"make it `async def {name}(...)` (awaiting its I/O), or remove "
                    "`concurrency:` (several processes still run tasks side by side)",
                )
            )
    return found


def streaming_conflicts(manifest: Manifest) -> list[Misfit]:
    """Streaming capabilities that declare batching or concurrency (lint: CRK114)."""
    found = []
    for cap in manifest.capabilities:
        if cap.streaming and (cap.batching is not None or cap.concurrency > 1):
            key = "batching" if cap.batching is not None else "concurrency"
            found.append(
                Misfit(
                    cap.id,
                    key,
                    f"{cap.id} is streaming and declares {key}: a streaming task runs alone, "
                    "publishing its events as it goes",
                    hint=f"remove `{key}:` from the streaming capability",
                )
            )
    return found


__all__ = ["BatchItem", "BatchScope", "Misfit", "handler_misfits", "streaming_conflicts"]
