"""The worker API: ``WorkerApplication``, ``@capability``, the task context."""

from __future__ import annotations

from crank.worker.app import CapabilityError, WorkerApplication, capability
from crank.worker.context import TaskCancelled, TaskContext

__all__ = ["CapabilityError", "TaskCancelled", "TaskContext", "WorkerApplication", "capability"]
