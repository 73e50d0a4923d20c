"""What the sync and the asyncio HTTP clients share: requests, answers, retries, events.

Each function is pure (a response in, a value or an exception out) so :mod:`.http`
and :mod:`.async_http` differ only in how they send and wait.
"""

from __future__ import annotations

import email.utils
import json
import random
import re
import sys
import time
import uuid
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
from tenacity import retry_if_exception_type, stop_after_attempt

from crank.client.errors import (
    ApiError,
    CancelNotSupported,
    CapabilityDeprecated,
    ClientError,
    ServerUnreachable,
    TaskFailed,
    TaskNotFound,
    TaskTimeout,
)
from crank.client.tasks import TaskEvent, check_caller, declared_by_status, positive_seconds

if TYPE_CHECKING:
    from tenacity import RetryCallState

DEFAULT_URL = "http://127.0.0.1:8080"
_SUCCESSOR = re.compile(r'<[^>]*/v1/capabilities/([^>/?#]+)>\s*;\s*rel="?successor-version"?')


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long the client retries what is safe to retry.

    Retried: 429 (waiting what ``Retry-After`` says, at most ``max_wait_s``) and a
    connection that could not be made or broke before an answer. Both are safe:
    every submit carries an ``Idempotency-Key``, so a repeated one returns the same task.
    """

    attempts: int = 5
    max_wait_s: float = 30.0
    #: first pause after a broken connection (doubling, with jitter).
    backoff_s: float = 0.05

    def __post_init__(self) -> None:
        if isinstance(self.attempts, bool) or not isinstance(self.attempts, int):
            raise ClientError(
                f"RetryPolicy.attempts must be a whole number, not {self.attempts!r:.40}",
                hint="pass how many times a request may be sent, e.g. RetryPolicy(attempts=5)",
            )
        if self.attempts < 1:
            raise ClientError(
                f"RetryPolicy.attempts must be at least 1, not {self.attempts}",
                hint="pass how many times a request may be sent, e.g. RetryPolicy(attempts=5)",
            )
        for name in ("max_wait_s", "backoff_s"):
            value = getattr(self, name)
            if not (positive_seconds(value) or value == 0):
                raise ClientError(
                    f"RetryPolicy.{name} must be a number of seconds, 0 or more, not {value!r:.40}",
                    hint="pass seconds, e.g. RetryPolicy(max_wait_s=30, backoff_s=0.05)",
                )

    def tenacity_options(self, deadline: float | None = None) -> dict[str, Any]:
        """Keyword arguments for ``tenacity.Retrying`` / ``AsyncRetrying``; with a
        ``deadline`` (``time.monotonic()``), no try is made whose wait would end past it
        (the last failure is raised instead: a 429 as its :class:`ApiError`)."""
        stop: Any = stop_after_attempt(self.attempts)
        if deadline is not None:

            def out_of_time(state: RetryCallState) -> bool:
                return time.monotonic() + (state.upcoming_sleep or 0.0) >= deadline

            stop = stop | out_of_time
        return {
            "stop": stop,
            "wait": self._wait,
            "retry": retry_if_exception_type((RetryLater, *RETRIED_TRANSPORT_ERRORS)),
            "reraise": True,
        }

    def _wait(self, state: RetryCallState) -> float:
        outcome = state.outcome
        failure = outcome.exception() if outcome is not None else None
        if isinstance(failure, RetryLater) and failure.retry_after_s is not None:
            return min(self.max_wait_s, failure.retry_after_s)
        return backoff_s(self.backoff_s, state.attempt_number, self.max_wait_s)


def backoff_s(base_s: float, attempt: int, cap_s: float) -> float:
    """Exponential backoff with jitter (a half to the whole of ``base * 2**(n-1)``)."""
    delay = min(cap_s, base_s * 2.0 ** min(attempt - 1, 20))
    return delay / 2.0 + random.random() * delay / 2.0  # noqa: S311 - jitter, not secrets


#: failures before the server answered, safe to retry (a read timeout is not one:
#: the request may still be running, and waiting again doubles the wait).
RETRIED_TRANSPORT_ERRORS: tuple[type[Exception], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.ReadError,
    httpx.WriteError,
    httpx.RemoteProtocolError,
)


class RetryLater(Exception):
    """Internal: a 429 to retry after ``retry_after_s`` (the client turns the last into
    an :class:`ApiError`)."""

    def __init__(self, response: httpx.Response, body: Any) -> None:
        super().__init__(f"HTTP {response.status_code}")
        self.response = response
        self.body = body
        self.retry_after_s = retry_after_s(response)


def new_idempotency_key() -> str:
    return uuid.uuid4().hex


def client_options(base_url: object, timeout: object) -> str:
    """``base_url`` without its trailing slash, once it and ``timeout`` (seconds above 0,
    or None: no limit) are usable; else a :class:`ClientError` saying what to pass."""
    parts = urlsplit(base_url) if isinstance(base_url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ClientError(
            f"base_url {base_url!r:.200} is not an http:// or https:// URL",
            hint=f"pass the address crank run serves, e.g. {DEFAULT_URL}",
            subject=str(base_url),
        )
    if parts.query or parts.fragment or str(base_url).endswith(("?", "#")):
        # every request would go to /?...{path}: crank run answers 404 "no route /"
        raise ClientError(
            f"base_url {base_url!r:.200} holds a query or a fragment: "
            "the client adds each request's path and query itself",
            hint=f"pass the address crank run serves alone, e.g. {DEFAULT_URL}",
            subject=str(base_url),
        )
    if timeout is not None and not positive_seconds(timeout):
        raise ClientError(
            f"timeout {timeout!r:.40} is not a number of seconds above 0",
            hint="pass the seconds a request may take (30 by default), or None for no limit",
            subject=str(timeout),
        )
    return str(base_url).rstrip("/")


#: what a bearer token may hold (RFC 6750's b64token, which any HTTP header can carry).
_TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")


def request_headers(
    token: str | None, caller: str | None, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The headers every request of a client carries."""
    # the server refuses (400) a caller it cannot use as a label and key scope: say so here
    check_caller(caller)
    if token and not (isinstance(token, str) and _TOKEN.fullmatch(token)):
        raise ClientError(
            "the token cannot be sent as a bearer token: it must be letters, digits and "
            "- . _ ~ + / (then = padding), with no spaces or line breaks",
            hint="pass the value of CRANK_API_TOKEN the server was started with",
        )
    headers = {"Accept": "application/json", "User-Agent": "crank-client"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if caller:
        headers["X-Crank-Caller"] = caller
    headers.update(extra or {})
    return headers


#: ``Retry-After`` seconds: RFC 9110's whole delay-seconds, or a decimal such as 1.5.
_DELAY_SECONDS = re.compile(r"[0-9]+(?:\.[0-9]+)?")


def retry_after_s(response: httpx.Response) -> float | None:
    """``Retry-After`` in seconds: delay-seconds or an HTTP date (RFC 9110 §10.2.3).

    Delay-seconds is a whole number by the RFC, but a server that asks for 1.5 s means
    it: taken as written, never shortened (read as "1", the retry came too soon; ignored,
    it came after the client's own backoff, sooner still)."""
    raw = response.headers.get("retry-after")
    if raw is None:
        return None
    raw = raw.strip()
    if _DELAY_SECONDS.fullmatch(raw):
        return float(raw)
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def body_of(response: httpx.Response) -> Any:
    """The JSON of an answer, or None when it is not JSON."""
    try:
        return response.json()
    except ValueError:
        return None


def deprecation_of(response: httpx.Response, requested: str) -> CapabilityDeprecated | None:
    """The warning to give when the answer carries a ``Deprecation`` header."""
    if "deprecation" not in response.headers:
        return None
    successors = tuple(
        dict.fromkeys(_SUCCESSOR.findall(", ".join(response.headers.get_list("link"))))
    )
    return CapabilityDeprecated(requested, successors, response.headers.get("sunset"))


def _inside(module: str) -> bool:
    """Whether a frame of ``module`` is crank's client or asyncio's machinery, which a
    warning meant for the caller's line passes by."""
    return module.startswith(("crank.client.", "asyncio.")) or module == "asyncio"


def warn_caller(warning: Warning) -> None:
    """Warn ``warning`` pointed at the first line outside crank's client and asyncio: the
    line that called the client, or, for a call run by ``asyncio.gather`` or a task of
    its own (no caller on the stack), the line that runs the event loop. Pointed at
    asyncio's insides, Python's default filters would hide a ``DeprecationWarning``."""
    level = 1  # counted as warnings.warn counts: 1 is this function, 2 its caller...
    frame = sys._getframe(1)
    while frame.f_back is not None and _inside(str(frame.f_globals.get("__name__", ""))):
        frame = frame.f_back
        level += 1
    warnings.warn(warning, stacklevel=level + 1)


def error_of(
    response: httpx.Response,
    body: Any,
    *,
    what: str,
    timeout: float | None = None,
    task_id: str | None = None,
) -> ClientError:
    """The exception for an error answer (``what`` names the request, for the message;
    ``timeout`` is the caller's, which a :class:`TaskTimeout` carries; ``task_id`` the
    task the request was about, which a :class:`TaskNotFound` names when the answer
    does not)."""
    status = response.status_code
    error = body.get("error") if isinstance(body, Mapping) else None
    if not isinstance(error, Mapping):
        text = response.text.strip()[:200] or response.reason_phrase
        return ApiError(
            status,
            f"HTTP_{status}",
            f"{what} answered {status}: {text}",
            retry_after_s=retry_after_s(response),
        )
    code = str(error.get("code") or f"HTTP_{status}")
    message = str(error.get("message") or response.reason_phrase)
    task_id = error.get("id") if isinstance(error.get("id"), str) else task_id
    task_error = error.get("task_error")
    if isinstance(task_id, str) and isinstance(task_error, Mapping):
        # a synchronous call whose task ended badly: 422 for a declared code, 502 otherwise
        attempts = error.get("attempts")
        return TaskFailed(
            task_id,
            str(task_error.get("code") or code),
            message,
            task_status=_text_or_none(error.get("task_status") or task_error.get("status")),
            error=task_error,
            declared=status == 422,
            attempts=attempts if isinstance(attempts, int) else None,
        )
    if status == 404 and code == "TASK_NOT_FOUND":
        return TaskNotFound(task_id or "", message)
    if status == 504 and code == "TIMEOUT":
        # the server's own wait, the capability's timeout_s, ran out before the caller's
        name = f"task {task_id}" if isinstance(task_id, str) else "the task"
        return TaskTimeout(
            task_id if isinstance(task_id, str) else None,
            timeout,
            message=f"the server stopped waiting for {name} at its capability's timeout_s: "
            f"{message}",
        )
    hint = error.get("hint")
    return ApiError(
        status,
        code,
        message,
        hint=str(hint) if hint else None,
        details=error,
        retry_after_s=retry_after_s(response),
    )


@dataclass
class EventCursor:
    """Where a task's event stream stands: the last event received, and how it ended."""

    task_id: str
    last_id: int = 0
    ended: bool = False
    #: consecutive connections that broke without bringing an event.
    broken: int = 0

    def take(self, event: str, event_id: str, data: str) -> TaskEvent | None:
        """One SSE frame: an event to hand out, None for ``end`` (then ``ended``) and for
        an event handed out already, or raises for ``error``."""
        if event == "end":
            self.ended = True
            return None
        if event == "error":
            self.ended = True
            raise stream_error(self.task_id, _json_or_text(data))
        if event != "message":
            return None
        number = int(event_id) if event_id.isdigit() else self.last_id + 1
        if number <= self.last_id:
            # sent again by a server (or a proxy) that did not resume after
            # Last-Event-ID: handed out once already; no progress either
            return None
        self.last_id = number
        self.broken = 0
        return TaskEvent(number, _json_or_text(data))


def stream_error(task_id: str, data: Any) -> ClientError:
    """The exception of an ``event: error`` frame."""
    error = data if isinstance(data, Mapping) else {"message": str(data)}
    code = str(error.get("code") or "WORKER_FAILED")
    message = str(error.get("message") or "the task failed")
    status = _text_or_none(error.get("status"))
    if code == "TASK_NOT_JSON":
        # not the task's failure: the server cannot write what the broker holds (an event
        # with a NaN), which reading the task answers as a 500 with this code
        hint = error.get("hint")
        return ApiError(500, code, message, hint=str(hint) if hint else None, details=error)
    if code == "TIMEOUT" and status is None:
        # the stream's own wait ran out (no status: the task goes on); a task that ended
        # with code TIMEOUT (its handler ran out of time) carries its final status
        return TaskTimeout(task_id, None, why=message)
    attempts = error.get("attempts")
    return TaskFailed(
        task_id,
        code,
        message,
        task_status=status,
        error=error,
        declared=declared_by_status(status),
        attempts=attempts if isinstance(attempts, int) else None,
    )


def _text_or_none(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _json_or_text(data: str) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return data


#: the longest wait handed to a socket (over 30 years: a wait that never runs out). The
#: operating system's clock cannot count much further: a synchronous socket refuses
#: 1e10 s with an ``OverflowError``, so a caller's huge ``timeout`` is cut to this.
LONGEST_SOCKET_WAIT_S = 1e9


def socket_timeout(timeout: httpx.Timeout) -> httpx.Timeout:
    """``timeout`` with no bound longer than :data:`LONGEST_SOCKET_WAIT_S` (None stays
    None: no bound)."""

    def cut(seconds: float | None) -> float | None:
        return None if seconds is None else min(seconds, LONGEST_SOCKET_WAIT_S)

    return httpx.Timeout(
        cut(timeout.connect),
        read=cut(timeout.read),
        write=cut(timeout.write),
        pool=cut(timeout.pool),
    )


def unbounded_read(timeout: httpx.Timeout) -> httpx.Timeout:
    """``timeout`` without a bound on reading: the server bounds a wait for a result."""
    return httpx.Timeout(timeout.connect, read=None, write=timeout.write, pool=timeout.pool)


def unreachable(url: str, what: str, exc: Exception, attempts: int) -> ServerUnreachable:
    return ServerUnreachable(
        f"{url} did not answer {what} ({type(exc).__name__}: {exc}) after {attempts} tries",
        hint="check that crank run is up at that address (GET /health)",
        subject=url,
    )


def cancel_not_supported(url: str, status: int) -> CancelNotSupported:
    return CancelNotSupported(
        f"the server at {url} cannot cancel tasks (DELETE /v1/tasks/{{id}} answered {status})",
        hint="upgrade crank on the server; until then a task runs to its end",
        subject=url,
    )


__all__ = [
    "DEFAULT_URL",
    "LONGEST_SOCKET_WAIT_S",
    "RETRIED_TRANSPORT_ERRORS",
    "EventCursor",
    "RetryLater",
    "RetryPolicy",
    "backoff_s",
    "body_of",
    "cancel_not_supported",
    "client_options",
    "deprecation_of",
    "error_of",
    "new_idempotency_key",
    "request_headers",
    "retry_after_s",
    "socket_timeout",
    "stream_error",
    "unbounded_read",
    "unreachable",
    "warn_caller",
]
