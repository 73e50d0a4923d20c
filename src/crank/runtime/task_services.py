"""What the runtime lends a running task beyond its input: recording LLM usage.

The worker layer declares what a task may ask of the process running it
(:class:`crank.worker.context.TaskServices`); :data:`RUNTIME_TASK_SERVICES` is the
runtime's answer, given to every task context a worker process builds. A
handler's ``ctx.record_usage(...)`` lands here and is added to the process's
usage store (:mod:`crank.runtime.usage`, the daily budget) and to the Prometheus
counters (:mod:`crank.runtime.metrics`). Neither of those two modules knows the
other.
"""

from __future__ import annotations

from crank.runtime.task_metrics import observe_llm_usage
from crank.runtime.usage import store_from_env
from crank.worker.context import TaskServices, validate_usage


def record_usage(
    capability: str, model: str, input_tokens: int, output_tokens: int, cost_usd: float
) -> None:
    """Persist one call's usage (if a store is configured) and count it in the metrics."""
    validate_usage(model, input_tokens, output_tokens, cost_usd)
    store = store_from_env()
    if store is not None:
        store.record(capability, model, input_tokens, output_tokens, float(cost_usd))
    observe_llm_usage(capability, model, input_tokens, output_tokens, float(cost_usd))


class RuntimeTaskServices:
    """:class:`~crank.worker.context.TaskServices` of a task the runtime runs."""

    def record_usage(
        self, capability: str, model: str, input_tokens: int, output_tokens: int, cost_usd: float
    ) -> None:
        record_usage(capability, model, input_tokens, output_tokens, cost_usd)


RUNTIME_TASK_SERVICES: TaskServices = RuntimeTaskServices()

__all__ = ["RUNTIME_TASK_SERVICES", "RuntimeTaskServices", "record_usage"]
