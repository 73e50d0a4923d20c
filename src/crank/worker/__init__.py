"""The worker API: ``WorkerApplication``, ``@capability``, the task context."""

from __future__ import annotations

from crank.worker.app import WorkerApplication, capability
from crank.worker.batch import BatchItem
from crank.worker.context import TaskCancelled, TaskContext
from crank.worker.errors import CapabilityError, DeclaredError, ErrorNamespace, UnknownErrorCode

__all__ = [
    "BatchItem",
    "CapabilityError",
    "DeclaredError",
    "ErrorNamespace",
    "TaskCancelled",
    "TaskContext",
    "UnknownErrorCode",
    "WorkerApplication",
    "capability",
]
