"""Structured logs: JSON in prod, readable lines in dev, secrets always redacted.

Every record carries the ids bound with :func:`bind_ids` for the current
request or task (``request_id``, ``trace_id``, ``task_id``, ``capability``);
:func:`redact` removes values under secret-looking keys (``password``,
``token``, ``api_key``, ``authorization``...) and values that look like keys
(``sk-...``, ``Bearer ...``, AWS/GitHub tokens, long random strings).
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
from collections.abc import Iterator, Mapping, MutableMapping
from typing import Any, TextIO

#: Optional packages structlog imports when they are installed, for its console
#: renderer's tracebacks: rich (with pygments) alone adds about 5 MB and 100 ms to every
#: process that logs, a worker included. crank renders JSON in prod and plain
#: tracebacks in dev.
_STRUCTLOG_EXTRAS = ("rich", "better_exceptions", "colorama")


@contextlib.contextmanager
def _hidden(names: tuple[str, ...]) -> Iterator[None]:
    """Imports of ``names`` fail (ImportError) inside the block: a ``None`` in
    ``sys.modules`` says "not installed". Put back at once, so a handler that imports
    rich itself still gets it."""
    saved = {name: sys.modules.get(name) for name in names}
    for name in saved:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        for name, module in saved.items():
            if module is None:
                del sys.modules[name]
            else:
                sys.modules[name] = module


with _hidden(_STRUCTLOG_EXTRAS):
    import structlog  # imported here, with its extras hidden (above)

REDACTED = "[REDACTED]"

_SECRET_KEY = re.compile(
    r"(pass(word|wd)?|secret|token|api[-_]?key|authorization|auth|cookie|credential|private[-_]?key)",
    re.IGNORECASE,
)
_SECRET_VALUE = re.compile(
    r"(\bBearer\s+\S+"
    r"|\bsk-[A-Za-z0-9_-]{16,}"
    r"|\bAKIA[0-9A-Z]{16}\b"
    r"|\bgh[pousr]_[A-Za-z0-9]{20,}"
    r"|\bxox[abpr]-[A-Za-z0-9-]{10,}"
    r"|-----BEGIN [A-Z ]*PRIVATE KEY-----"
    r"|\b(?=[A-Za-z0-9+/_-]*[0-9])(?=[A-Za-z0-9+/_-]*[a-z])(?=[A-Za-z0-9+/_-]*[A-Z])[A-Za-z0-9+/_-]{32,}\b)"
)
_MAX_DEPTH = 6


def _may_hold_secret(value: str) -> bool:
    """False when ``_SECRET_VALUE`` cannot match: every pattern but ``sk-``, ``gh?_`` and
    ``xox?-`` needs an uppercase letter. Skipping the regex for the rest (paths, hex ids,
    ordinary words) makes a log line several times cheaper; a test holds the two equal."""
    return "sk-" in value or "gh" in value or "xox" in value or value != value.lower()


def redact(value: Any, *, key: str | None = None, depth: int = 0) -> Any:
    """A copy of ``value`` with secrets replaced by ``[REDACTED]``."""
    if key is not None and _SECRET_KEY.search(key) and value not in (None, "", False):
        return REDACTED
    if depth > _MAX_DEPTH:
        return value
    if isinstance(value, str):
        return _SECRET_VALUE.sub(REDACTED, value) if _may_hold_secret(value) else value
    if isinstance(value, Mapping):
        return {k: redact(v, key=str(k), depth=depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v, depth=depth + 1) for v in value]
    return value


def redact_processor(logger: Any, method: str, event_dict: MutableMapping[str, Any]) -> Any:
    """structlog processor form of :func:`redact`."""
    return {k: redact(v, key=None if k == "event" else k) for k, v in event_dict.items()}


def configure_logging(
    mode: str = "prod", *, stream: TextIO | None = None, level: int | None = None
) -> None:
    """JSON lines (prod) or console lines (dev) for structlog and the stdlib ``logging``.

    Stdlib records (uvicorn, task loggers) go through the same processors, so
    they are redacted and carry the bound ids too.
    """
    verbose = mode == "dev"
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.ExtraAdder(),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_processor,
    ]
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=False)
        if verbose
        else structlog.processors.JSONRenderer(default=str)
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter)
    handler.set_name("crank")
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == "crank"]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level if level is not None else (logging.DEBUG if verbose else logging.INFO))
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        uv = logging.getLogger(name)
        uv.handlers.clear()
        uv.propagate = True


def get_logger(name: str = "crank.runtime") -> Any:
    return structlog.stdlib.get_logger(name)


def bind_ids(**ids: Any) -> None:
    """Attach ids (request_id, trace_id, task_id, capability) to every log line of this context."""
    structlog.contextvars.bind_contextvars(**{k: v for k, v in ids.items() if v is not None})


def clear_ids() -> None:
    structlog.contextvars.clear_contextvars()


__all__ = [
    "REDACTED",
    "bind_ids",
    "clear_ids",
    "configure_logging",
    "get_logger",
    "redact",
    "redact_processor",
]
