"""Calls out of a worker: retry with exponential backoff + jitter, and circuit breakers.

Built on tenacity (retries) and pybreaker (breakers) rather than hand-rolled.
Breakers are shared per process and per name, so every task of a worker process
that calls the same provider sees the same open/closed state::

    breaker = ctx.circuit_breaker("openai")
    reply = ctx.retry(breaker.call, client.complete, prompt, attempts=4)
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable

    import pybreaker

T = TypeVar("T")

DEFAULT_ATTEMPTS = 3
DEFAULT_BASE_S = 0.2
DEFAULT_MAX_S = 10.0


def retrying(
    *,
    attempts: int = DEFAULT_ATTEMPTS,
    base_s: float = DEFAULT_BASE_S,
    max_s: float = DEFAULT_MAX_S,
    retry_on: tuple[type[BaseException], ...] = (Exception,),
    give_up_on: tuple[type[BaseException], ...] = (),
    deadline: Callable[[], float | None] | None = None,
    sleep: Callable[[float], None] | None = None,
) -> Any:
    """A tenacity ``Retrying`` (``policy(func, *args)``; ``policy.wraps`` decorates) with
    exponential backoff + jitter.

    Gives up after ``attempts`` tries, on an exception in ``give_up_on`` (an open
    circuit breaker is always one), or when ``deadline()`` (seconds left of the
    task) would be passed by the next wait. The last exception is re-raised.
    """
    # Imported on first use: the task context imports this module, and with it every
    # handler and `crank --help` (through the worker layer's lint rule); pybreaker pulls
    # in redis-py. Only a handler that retries or breaks a circuit pays for them.
    import pybreaker
    import tenacity

    if attempts < 1:
        raise ValueError(f"attempts must be at least 1 (got {attempts})")
    never: tuple[type[BaseException], ...] = (pybreaker.CircuitBreakerError, *give_up_on)

    def should_retry(state: tenacity.RetryCallState) -> bool:
        outcome = state.outcome
        if outcome is None or not outcome.failed:
            return False
        exc = outcome.exception()
        return isinstance(exc, retry_on) and not isinstance(exc, never)

    stops: Any = tenacity.stop_after_attempt(attempts)
    if deadline is not None:

        def out_of_time(state: tenacity.RetryCallState) -> bool:
            left = deadline()
            upcoming = state.upcoming_sleep or 0.0
            return left is not None and left <= upcoming

        stops = stops | out_of_time
    options: dict[str, Any] = {}
    if sleep is not None:
        options["sleep"] = sleep
    return tenacity.Retrying(
        stop=stops,
        wait=tenacity.wait_exponential(multiplier=base_s, max=max_s)
        + tenacity.wait_random(0, base_s),
        retry=should_retry,
        reraise=True,
        **options,
    )


def call_with_retry(func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``func(*args, **kwargs)`` retried with the defaults of :func:`retrying`."""
    result: T = retrying()(func, *args, **kwargs)
    return result


_breakers: dict[str, pybreaker.CircuitBreaker] = {}
_breakers_lock = threading.Lock()


def circuit_breaker(
    name: str, *, fail_max: int = 5, reset_timeout_s: float = 30.0
) -> pybreaker.CircuitBreaker:
    """The process-wide breaker called ``name`` (created on first use with these limits).

    After ``fail_max`` consecutive failures it opens: calls fail at once with
    ``pybreaker.CircuitBreakerError`` for ``reset_timeout_s``, then one trial call
    decides whether it closes again.
    """
    import pybreaker  # on first use, see retrying()

    if not name:
        raise ValueError(
            "a circuit breaker needs a name, e.g. the provider: circuit_breaker('openai')"
        )
    with _breakers_lock:
        breaker = _breakers.get(name)
        if breaker is None:
            breaker = pybreaker.CircuitBreaker(
                fail_max=fail_max, reset_timeout=reset_timeout_s, name=name
            )
            _breakers[name] = breaker
        return breaker


def reset_circuit_breakers() -> None:
    """Forget every breaker (tests)."""
    with _breakers_lock:
        _breakers.clear()


__all__ = [
    "DEFAULT_ATTEMPTS",
    "DEFAULT_BASE_S",
    "DEFAULT_MAX_S",
    "call_with_retry",
    "circuit_breaker",
    "reset_circuit_breakers",
    "retrying",
]
