"""Queue backends: in-memory (tests), SQLite (embedded default), Redis Streams.

``open_broker(url, **options)`` picks one by URL scheme. Options may also be
given as URL query parameters (``sqlite:///q.db?retry_base_s=0.1``):

* ``retry_base_s`` / ``retry_max_s``: backoff of retryable failures (seconds, 0 or
  more: 0 retries at once);
* ``result_ttl_s``: how long results of finished tasks are kept (seconds, above 0;
  default 1 day);
* ``prefix`` (Redis): key prefix, default ``crank``.

A value that is not a finite number in its range is a :class:`~crank.errors.UsageError`
naming the option: ``result_ttl_s=-5`` would have ended every result as it was stored.
So is an option not listed here, given in the URL or as a keyword argument.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from crank.errors import UsageError
from crank.runtime.brokers.common import url_usage_error, url_without_password

if TYPE_CHECKING:
    from crank.runtime.brokers.contract import Broker

SCHEMES = ("memory://", "sqlite:///PATH", "redis://HOST:PORT/DB")
_REDIS_SCHEMES = ("redis", "rediss", "unix")
#: the options that are seconds, and the least each may be (and whether it may be that).
_FLOAT_OPTIONS = {"retry_base_s": True, "retry_max_s": True, "result_ttl_s": False}
#: the options of one backend besides those (the timeouts: keyword arguments only).
_BACKEND_OPTIONS: dict[str, frozenset[str]] = {
    **dict.fromkeys(_REDIS_SCHEMES, frozenset({"prefix", "socket_timeout_s"})),
    "sqlite": frozenset({"busy_timeout_ms"}),
}


def _seconds(url: str, key: str, value: Any) -> float:
    """``value`` of option ``key`` as seconds, or the usage error saying what it must be."""
    zero_allowed = _FLOAT_OPTIONS[key]
    must = "a number of seconds, 0 or more" if zero_allowed else "a number of seconds above 0"
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise url_usage_error(
            url, f"option {key}={value!r} is not a number", hint=f"{key} must be {must}"
        ) from None
    if not math.isfinite(seconds) or seconds < 0 or (seconds == 0 and not zero_allowed):
        raise url_usage_error(
            url, f"option {key}={value!r} is out of range", hint=f"{key} must be {must}"
        )
    return seconds


def _known_options() -> str:
    return ", ".join(sorted(_FLOAT_OPTIONS.keys() | {"prefix"}))


def parse_options(url: str, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Split query parameters off ``url`` and merge them under explicit ``options``;
    an option of either kind that no backend takes is a :class:`UsageError`."""
    base, _, query = url.partition("?")
    merged: dict[str, Any] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key in _FLOAT_OPTIONS or key == "prefix":
            merged[key] = value
        else:
            raise url_usage_error(url, f"unknown option {key!r} (known: {_known_options()})")
    # checked here, not left to the backend: its TypeError would name its __init__
    known = _FLOAT_OPTIONS.keys() | _BACKEND_OPTIONS.get(urlsplit(base).scheme.lower(), frozenset())
    unknown = sorted(options.keys() - known)
    if unknown:
        raise UsageError(
            f"broker {url_without_password(url)}: unknown option {unknown[0]!r} "
            f"(known: {', '.join(sorted(known))})",
            hint="check its spelling (prefix is for Redis only); "
            f"{_known_options()} may be URL query parameters too",
            subject=unknown[0],
        )
    merged.update(options)
    for key in _FLOAT_OPTIONS.keys() & merged.keys():
        merged[key] = _seconds(url, key, merged[key])
    return base, merged


def open_broker(url: str, **options: Any) -> Broker:
    """Open the broker named by ``url``; see the module docstring for options.

    Only the backend the URL names is imported (lazily, below): every import of the
    contract goes through this package, and a process on SQLite must not load the
    Redis backend (nor one on Redis the SQLite one).
    """
    if not isinstance(url, str) or "://" not in url:
        raise url_usage_error(str(url), "it has no scheme")
    base, opts = parse_options(url, options)
    scheme = urlsplit(base).scheme.lower()
    if "prefix" in opts and scheme not in _REDIS_SCHEMES:
        raise url_usage_error(
            url,
            "option prefix is for Redis brokers only",
            hint="leave it out: a SQLite queue has a file of its own",
        )
    if scheme == "memory":
        from crank.runtime.brokers.memory import MemoryBroker

        return MemoryBroker(url=base, **opts)
    if scheme == "sqlite":
        if not base.startswith("sqlite:///") or len(base) <= len("sqlite:///"):
            raise url_usage_error(url, "a SQLite URL needs a file path after three slashes")
        from crank.runtime.brokers.sqlite import SqliteBroker

        return SqliteBroker(base[len("sqlite:///") :], url=base, **opts)
    if scheme in _REDIS_SCHEMES:
        from crank.runtime.brokers.redis import RedisBroker

        return RedisBroker(base, **opts)
    raise url_usage_error(url, f"unknown scheme {scheme!r}")


__all__ = ["SCHEMES", "open_broker", "parse_options"]
