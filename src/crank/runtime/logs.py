"""Structured logs: readable lines on a terminal, JSON lines elsewhere, secrets redacted.

The format (``CRANK_LOG_FORMAT``): ``console`` (readable lines; in colour on a
terminal), ``json`` (one JSON object per line) or ``auto`` (the default): console
when the log stream is a terminal or the mode is ``dev``, JSON otherwise. A JSON
line of an exception carries its formatted traceback under ``exception``.

Every record carries the ids bound with :func:`bind_ids` for the current request
or task (``request_id``, ``trace_id``, ``task_id``, ``capability``), and every
record, crank's or a library's through the stdlib ``logging``, is redacted
(:mod:`crank.runtime.redaction`). uvicorn's ``color_message`` is dropped and escape
codes are stripped from JSON lines.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import re
import sys
import types
from typing import TYPE_CHECKING, Any, Literal, TextIO

from crank.errors import UsageError
from crank.runtime.redaction import REDACTED, redact, redact_processor

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, MutableMapping

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


class _ImportedOnFirstUse(types.ModuleType):
    """Stands in for a module that is imported when one of its attributes is first read."""

    def __getattr__(self, attr: str) -> Any:
        if sys.modules.get(self.__name__) is self:  # read while still standing in
            del sys.modules[self.__name__]
        return getattr(importlib.import_module(self.__name__), attr)


#: Modules structlog imports for its async methods only (``ainfo``...): asyncio, with
#: ssl under it, is about 10 MB of a worker process whose handlers are all sync.
_STRUCTLOG_DEFERRED = ("asyncio",)


@contextlib.contextmanager
def _deferred(names: tuple[str, ...]) -> Iterator[None]:
    """Imports of ``names`` inside the block get a stand-in that imports the real module
    on first use; taken out of ``sys.modules`` at once, so any later ``import`` is real."""
    stand_ins = {name: _ImportedOnFirstUse(name) for name in names if name not in sys.modules}
    sys.modules.update(stand_ins)
    try:
        yield
    finally:
        for name, stand_in in stand_ins.items():
            if sys.modules.get(name) is stand_in:
                del sys.modules[name]


with _hidden(_STRUCTLOG_EXTRAS), _deferred(_STRUCTLOG_DEFERRED):
    import structlog  # imported here, with its extras hidden and asyncio deferred (above)

LOG_FORMAT_ENV = "CRANK_LOG_FORMAT"
LogFormat = Literal["json", "console"]
_FORMATS = ("auto", "json", "console")
#: Keys libraries add for a coloured console of their own (uvicorn).
_DROPPED_KEYS = ("color_message",)
_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)")


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def resolve_log_format(
    mode: str = "prod", *, stream: TextIO | None = None, environ: Mapping[str, str] | None = None
) -> LogFormat:
    """The format ``CRANK_LOG_FORMAT`` asks for, ``auto`` resolved for ``stream`` and ``mode``."""
    env = os.environ if environ is None else environ
    raw = env.get(LOG_FORMAT_ENV, "")
    value = raw.strip().lower() or "auto"
    if value not in _FORMATS:
        raise UsageError(
            f"{LOG_FORMAT_ENV}={raw!r} is not a log format",
            hint=f"set {LOG_FORMAT_ENV} to one of {', '.join(_FORMATS)}, or unset it",
            subject=LOG_FORMAT_ENV,
        )
    if value == "json":
        return "json"
    if value == "console" or mode == "dev":
        return "console"
    return "console" if _is_terminal(stream or sys.stderr) else "json"


def _drop_library_keys(logger: Any, method: str, event_dict: MutableMapping[str, Any]) -> Any:
    for key in _DROPPED_KEYS:
        event_dict.pop(key, None)
    return event_dict


def _strip_escape_codes(logger: Any, method: str, event_dict: MutableMapping[str, Any]) -> Any:
    """No terminal escape codes in a JSON line (a library's colours, a child's output)."""
    for key, value in event_dict.items():
        if isinstance(value, str) and "\x1b" in value:
            event_dict[key] = _ANSI_ESCAPE.sub("", value).replace("\x1b", "")
    return event_dict


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to ``sys.stderr`` as it is at each record, not as it was at configuration.

    A program (or a test run) that swaps stderr and closes the old one, as pytest's
    capture does between tests, would otherwise make every later record a
    "--- Logging error --- I/O operation on closed file".
    """

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:  # StreamHandler assigns it; stderr it stays
        pass


class _ProcessContext:
    """A processor adding this process's fields to every record (the record's own win)."""

    def __init__(self, fields: Mapping[str, Any]) -> None:
        self.fields = dict(fields)

    def __call__(self, _logger: Any, _name: str, event: dict[str, Any]) -> dict[str, Any]:
        for key, value in self.fields.items():
            event.setdefault(key, value)
        return event


def configure_logging(
    mode: str = "prod",
    *,
    stream: TextIO | None = None,
    level: int | None = None,
    log_format: LogFormat | None = None,
    context: Mapping[str, Any] | None = None,
) -> LogFormat:
    """Send structlog and the stdlib ``logging`` to ``stream`` (stderr) as JSON or console
    lines; returns the format chosen (``log_format``, else :func:`resolve_log_format`).

    Stdlib records (uvicorn, task loggers) go through the same processors, so
    they are redacted and carry the bound ids too. ``context`` is added to every record
    of this process (which of the HTTP processes wrote it).
    """
    out = stream or sys.stderr
    chosen = log_format or resolve_log_format(mode, stream=out)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if context:
        shared.append(_ProcessContext(context))
    rendering: list[Any]
    if chosen == "json":
        rendering = [
            structlog.processors.format_exc_info,  # the traceback as text, then redacted
            _drop_library_keys,
            redact_processor,
            _strip_escape_codes,
            structlog.processors.JSONRenderer(default=str),
        ]
    else:
        rendering = [
            _drop_library_keys,
            redact_processor,
            structlog.dev.ConsoleRenderer(
                colors=_is_terminal(out) and not os.environ.get("NO_COLOR"),
                exception_formatter=structlog.dev.plain_traceback,
            ),
        ]
    structlog_processors = [*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter]
    structlog.configure(
        processors=structlog_processors,
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *rendering],
    )
    handler = logging.StreamHandler(out) if stream is not None else _StderrHandler()
    handler.setFormatter(formatter)
    handler.set_name("crank")
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == "crank"]:
        root.removeHandler(old)
    root.addHandler(handler)
    global _direct  # the one logging set-up of this process, as structlog's own
    _direct = _DirectLines(handler, formatter, structlog_processors, [*shared, *rendering])
    root.setLevel(
        level if level is not None else (logging.DEBUG if mode == "dev" else logging.INFO)
    )
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        uv = logging.getLogger(name)
        uv.handlers.clear()
        uv.propagate = True
    return chosen


def get_logger(name: str = "crank.runtime") -> Any:
    return structlog.stdlib.get_logger(name)


class _DirectLines:
    """What :func:`configure_logging` set up, for :class:`LineLogger` to write the same
    lines without the stdlib bridge; valid while nobody changed that set-up."""

    __slots__ = ("formatter", "handler", "processors", "structlog_processors")

    def __init__(
        self,
        handler: logging.StreamHandler[TextIO],
        formatter: logging.Formatter,
        structlog_processors: list[Any],
        processors: list[Any],
    ) -> None:
        self.handler = handler
        self.formatter = formatter
        self.structlog_processors = list(structlog_processors)
        #: structlog's chain then the formatter's: the event dict to the finished line.
        self.processors = processors

    def serves(self, logger: logging.Logger) -> bool:
        """Whether a record of ``logger`` would reach this handler only, and unfiltered.

        Anything else (a handler added by a test's ``caplog`` or an application, a
        filter, structlog configured anew, as ``capture_logs`` does) takes the stdlib
        path, so what each of them sees is unchanged.
        """
        handler = self.handler
        if (
            logger.disabled
            or logger.filters
            or handler.filters
            or handler.formatter is not self.formatter
            # compared by content: capture_logs() changes the configured list in place
            or structlog.get_config()["processors"] != self.structlog_processors
        ):
            return False
        current: logging.Logger | None = logger
        while current is not None:
            if current.parent is None:  # the root logger
                return current.handlers == [handler] and not current.filters
            # crank's own NullHandler (see crank/__init__.py) writes nothing
            if not current.propagate or any(
                not isinstance(h, logging.NullHandler) for h in current.handlers
            ):
                return False
            current = current.parent
        return False


_direct: _DirectLines | None = None


class LineLogger:
    """A logger of one kind of frequent line (the access log), for the hot path: the
    same line, in the same format, redacted and carrying the bound ids, as
    ``get_logger(name).info(...)`` writes, without the stdlib bridge (two
    ``LogRecord`` objects and a walk through ``logging``'s handlers per line).

    While the process's logging is the one :func:`configure_logging` set up, it runs
    the very processors that set-up runs and writes to its handler (under the
    handler's lock, errors reported as ``logging`` reports them); otherwise it logs
    through structlog as usual.
    """

    __slots__ = ("_name", "_slow", "_stdlib")

    def __init__(self, name: str = "crank.runtime") -> None:
        self._name = name
        self._stdlib = logging.getLogger(name)
        self._slow = get_logger(name)

    def info(self, event: str, **fields: Any) -> None:
        direct = _direct
        if direct is None or not direct.serves(self._stdlib):
            # structlog's lazy proxy: it follows a new configuration (capture_logs)
            self._slow.info(event, **fields)
            return
        logger = self._stdlib
        if not logger.isEnabledFor(logging.INFO) or direct.handler.level > logging.INFO:
            return
        event_dict: Any = fields
        event_dict["event"] = event
        for processor in direct.processors:
            event_dict = processor(logger, "info", event_dict)
        handler = direct.handler
        handler.acquire()
        try:
            handler.stream.write(event_dict + handler.terminator)
            handler.flush()
        except RecursionError:
            raise
        except Exception:  # a closed stream...: reported the way logging reports it
            record = logger.makeRecord(
                self._name, logging.INFO, "(line logger)", 0, event, (), None
            )
            handler.handleError(record)
        finally:
            handler.release()


def bind_ids(**ids: Any) -> None:
    """Attach ids (request_id, trace_id, task_id, capability) to every log line of this context."""
    structlog.contextvars.bind_contextvars(**{k: v for k, v in ids.items() if v is not None})


def clear_ids() -> None:
    structlog.contextvars.clear_contextvars()


class bound_ids:  # lower case: used like a function, ``with bound_ids(task_id=...):``
    """:func:`bind_ids` for the duration of a block (a task), then the ids before it.

    A class, not a generator: it runs around every task of a worker process, and
    binding then resetting structlog's context variables by their tokens is the
    cheap way (about 3 µs)."""

    __slots__ = ("_ids", "_tokens")

    def __init__(self, **ids: Any) -> None:
        self._ids = {k: v for k, v in ids.items() if v is not None}
        self._tokens: Mapping[str, Any] = {}

    def __enter__(self) -> None:
        self._tokens = structlog.contextvars.bind_contextvars(**self._ids)

    def __exit__(self, *exc: object) -> None:
        structlog.contextvars.reset_contextvars(**self._tokens)


__all__ = [
    "LOG_FORMAT_ENV",
    "REDACTED",
    "LineLogger",
    "LogFormat",
    "bind_ids",
    "bound_ids",
    "clear_ids",
    "configure_logging",
    "get_logger",
    "redact",
    "redact_processor",
    "resolve_log_format",
]
