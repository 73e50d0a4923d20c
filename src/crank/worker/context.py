"""The task context a capability handler receives with its input."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from crank.errors import CrankError
from crank.worker.outbound_calls import circuit_breaker, retrying


class TaskCancelled(CrankError):
    """The task was cancelled or ran past its deadline; the handler should stop."""


ProgressSink = Callable[[float, str], None]
EventSink = Callable[[Mapping[str, Any]], None]


def _drop_progress(fraction: float, message: str) -> None:
    return None


def _drop_event(event: Mapping[str, Any]) -> None:
    return None


class TaskServices(Protocol):
    """What the process running a task lends it beyond its input.

    The runtime implements it (:mod:`crank.runtime.task_services`: LLM usage goes to
    the daily budget and the metrics) and hands it to every task context it builds;
    the worker layer knows only this protocol. Without one (tests, in-process calls)
    a task keeps what it reports on its context.
    """

    def record_usage(
        self, capability: str, model: str, input_tokens: int, output_tokens: int, cost_usd: float
    ) -> None:
        """Account one LLM call of a task of ``capability`` (already validated)."""
        ...


class _NoServices:
    """A task outside the runtime: usage stays on the context (``ctx.extras``)."""

    def record_usage(
        self, capability: str, model: str, input_tokens: int, output_tokens: int, cost_usd: float
    ) -> None:
        return None


NO_SERVICES: TaskServices = _NoServices()


def validate_usage(model: str, input_tokens: int, output_tokens: int, cost_usd: float) -> None:
    """Refuse usage that cannot be added up (a handler bug), naming the argument."""
    if not isinstance(model, str) or not model:
        raise ValueError("record_usage needs the model name, e.g. record_usage('gpt-4o-mini', ...)")
    for name, value in (("input_tokens", input_tokens), ("output_tokens", output_tokens)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"record_usage: {name} must be a whole number >= 0 (got {value!r})")
    if not isinstance(cost_usd, (int, float)) or isinstance(cost_usd, bool) or cost_usd < 0:
        raise ValueError(f"record_usage: cost_usd must be a number >= 0 (got {cost_usd!r})")


class TaskContext:
    """What a handler knows about the task it runs.

    The runtime fills the sinks and lends its :class:`TaskServices`; in-process
    calls (tests) get sinks that record or drop. ``deadline`` is a
    :func:`time.monotonic` value.
    One is built per task, so it is a plain slotted class whose logger is made on
    first use: most handlers never log, and the queue's hot path pays for every
    allocation here.
    """

    __slots__ = (
        "_cancelled",
        "_logger",
        "attempt",
        "capability",
        "deadline",
        "errors",
        "event_sink",
        "extras",
        "max_attempts",
        "progress_sink",
        "services",
        "task_id",
    )

    def __init__(
        self,
        capability: str,
        task_id: str | None = None,
        attempt: int = 1,
        max_attempts: int = 1,
        deadline: float | None = None,
        logger: logging.LoggerAdapter[logging.Logger] | Any = None,
        progress_sink: ProgressSink = _drop_progress,
        event_sink: EventSink = _drop_event,
        extras: dict[str, Any] | None = None,
        errors: Any = None,
        services: TaskServices = NO_SERVICES,
    ) -> None:
        self.capability = capability
        self.task_id = task_id if task_id is not None else uuid.uuid4().hex
        self.attempt = attempt
        self.max_attempts = max_attempts
        self.deadline = deadline
        self._logger = logger
        self.progress_sink = progress_sink
        self.event_sink = event_sink
        #: free-form values the runtime passes along (caller id, trace id, request id).
        self.extras: dict[str, Any] = extras if extras is not None else {}
        #: the capability's declared error classes (``ctx.errors.INVALID_INPUT("...")``);
        #: filled by :class:`~crank.worker.host.WorkerHost` when left None.
        self.errors = errors
        #: what the process running the task lends it (see :class:`TaskServices`).
        self.services = services
        self._cancelled = False

    def __repr__(self) -> str:
        return (
            f"TaskContext(capability={self.capability!r}, task_id={self.task_id!r}, "
            f"attempt={self.attempt}, max_attempts={self.max_attempts}, "
            f"deadline={self.deadline!r})"
        )

    @property
    def logger(self) -> logging.LoggerAdapter[logging.Logger] | Any:
        """A logger adapter carrying ``task_id`` and ``capability`` on every record."""
        if self._logger is None:
            self._logger = logging.LoggerAdapter(
                logging.getLogger(f"crank.task.{self.capability}"),
                {"task_id": self.task_id, "capability": self.capability},
            )
        return self._logger

    @property
    def caller(self) -> str | None:
        """Who called (the API caller the HTTP server identified), when the runtime knows."""
        caller = self.extras.get("caller")
        return None if caller is None else str(caller)

    @classmethod
    def for_call(cls, capability: str, timeout_s: float | None = None, **kw: Any) -> TaskContext:
        deadline = time.monotonic() + timeout_s if timeout_s else None
        return cls(capability=capability, deadline=deadline, **kw)

    # -- time and cancellation -------------------------------------------------

    def time_left(self) -> float | None:
        """Seconds until the deadline (never negative), or None without one."""
        if self.deadline is None:
            return None
        return max(0.0, self.deadline - time.monotonic())

    @property
    def cancelled(self) -> bool:
        return self._cancelled or (self.deadline is not None and time.monotonic() >= self.deadline)

    def cancel(self) -> None:
        """Ask the handler to stop (from any thread); it sees it at its next check."""
        self._cancelled = True

    def check_cancelled(self) -> None:
        """Raise :class:`TaskCancelled` if the task was cancelled or its deadline passed."""
        if self.cancelled:
            raise TaskCancelled(
                f"task {self.task_id} ({self.capability}) was cancelled or timed out"
            )

    # -- reporting -------------------------------------------------------------

    def progress(self, fraction: float, message: str = "") -> None:
        """Report progress in [0, 1]; values outside are clamped."""
        self.progress_sink(min(1.0, max(0.0, float(fraction))), message)

    def emit(self, event: Mapping[str, Any]) -> None:
        """Send one streaming event to the caller (SSE over HTTP)."""
        self.event_sink(event)

    # -- calls out of the worker (retry, circuit breaker, LLM usage) -------------

    def retry(self, func: Callable[..., Any], *args: Any, attempts: int = 3, **kwargs: Any) -> Any:
        """Call ``func(*args, **kwargs)``, retrying failures with exponential backoff + jitter.

        Stops after ``attempts`` tries, when the task's deadline would pass, or at
        once on an open circuit breaker; the last exception is re-raised.
        """
        return retrying(attempts=attempts, deadline=self.time_left)(func, *args, **kwargs)

    def retrying(self, **options: Any) -> Any:
        """The same policy as a decorator: ``@ctx.retrying(attempts=5)``."""
        options.setdefault("deadline", self.time_left)
        return retrying(**options).wraps

    def circuit_breaker(
        self, name: str, *, fail_max: int = 5, reset_timeout_s: float = 30.0
    ) -> Any:
        """The worker process's shared ``pybreaker.CircuitBreaker`` for provider ``name``."""
        return circuit_breaker(name, fail_max=fail_max, reset_timeout_s=reset_timeout_s)

    def record_usage(
        self, model: str, input_tokens: int, output_tokens: int, cost_usd: float
    ) -> None:
        """Record one LLM call's tokens and cost for this capability (metrics + daily budget
        when the runtime runs the task, and ``extras["llm_usage"]`` always)."""
        validate_usage(model, input_tokens, output_tokens, cost_usd)
        self.services.record_usage(self.capability, model, input_tokens, output_tokens, cost_usd)
        self.extras.setdefault("llm_usage", []).append(
            {
                "model": model,
                "input_tokens": input_tokens,
                "output_tokens": output_tokens,
                "cost_usd": cost_usd,
            }
        )
