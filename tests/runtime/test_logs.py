"""JSON and console logs: bound ids, tracebacks, no escape codes, secret redaction."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import sys
from typing import TYPE_CHECKING

import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st

from crank.errors import UsageError
from crank.runtime.logs import (
    REDACTED,
    LineLogger,
    bind_ids,
    bound_ids,
    clear_ids,
    configure_logging,
    get_logger,
    redact,
    resolve_log_format,
)
from crank.runtime.redaction import is_secret_key, redact_processor, redact_text

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from crank.runtime.logs import LogFormat


@pytest.fixture
def configured(logging_restored: None) -> Iterator[Callable[..., io.StringIO]]:
    """``configured(mode, log_format=None)``: crank's logging into a fresh string stream."""

    def configure(mode: str = "prod", log_format: LogFormat | None = None) -> io.StringIO:
        stream = io.StringIO()
        assert configure_logging(mode, stream=stream, log_format=log_format) == (
            log_format or "json"  # a StringIO is no terminal
        )
        return stream

    yield configure
    clear_ids()


@pytest.fixture
def log_stream(configured: Callable[..., io.StringIO]) -> io.StringIO:
    return configured("prod")


def test_json_lines_carry_ids_and_redact(log_stream: io.StringIO) -> None:
    bind_ids(request_id="r1", trace_id="t1", task_id="k1", capability="a.x")
    get_logger("crank.test").info(
        "calling_provider",
        api_key="abc",
        headers={"Authorization": "Bearer xyz", "accept": "json"},
        note="key sk-abcdefghijklmnopqrstuvwx used",
    )
    logging.getLogger("crank.task.a.x").warning("stdlib password=%s", "hunter2")
    first, second = (json.loads(line) for line in log_stream.getvalue().splitlines())
    assert (first["request_id"], first["trace_id"], first["task_id"], first["capability"]) == (
        "r1", "t1", "k1", "a.x"
    )  # fmt: skip
    assert first["api_key"] == REDACTED
    assert first["headers"] == {"Authorization": REDACTED, "accept": "json"}
    assert first["note"] == f"key {REDACTED} used"
    assert first["level"] == "info"
    assert second["task_id"] == "k1"
    assert second["level"] == "warning"
    assert second["logger"] == "crank.task.a.x"
    assert second["event"] == f"stdlib password={REDACTED}"  # the formatted record, redacted
    assert "hunter2" not in log_stream.getvalue()


def test_a_library_record_reaches_cranks_own_logs(log_stream: io.StringIO) -> None:
    """The NullHandler crank adds for programs that set up no logging holds nothing
    back from the logs of crank run (the root logger's handler)."""
    import crank.runtime.brokers.redis  # noqa: F401 - sets the NullHandler

    crank_logger = logging.getLogger("crank")
    assert any(isinstance(h, logging.NullHandler) for h in crank_logger.handlers)
    logging.getLogger("crank.runtime.brokers.redis").warning(
        "redis_subscription_lost", extra={"channel": "crank:n:1", "error": "reset"}
    )
    [line] = (json.loads(line) for line in log_stream.getvalue().splitlines())
    assert (line["event"], line["level"], line["logger"]) == (
        "redis_subscription_lost", "warning", "crank.runtime.brokers.redis"
    )  # fmt: skip


def test_ids_bound_for_a_block_apply_inside_it_only(log_stream: io.StringIO) -> None:
    bind_ids(request_id="outer")
    with bound_ids(task_id="t1", request_id="inner", trace_id=None):
        logging.getLogger("crank.task.a.x").info("inside")
    logging.getLogger("crank.task.a.x").info("after")
    inside, after = (json.loads(line) for line in log_stream.getvalue().splitlines())
    assert (inside["task_id"], inside["request_id"]) == ("t1", "inner")
    assert "trace_id" not in inside  # None is not bound
    assert after["request_id"] == "outer" and "task_id" not in after


def test_a_json_line_holds_the_formatted_traceback(log_stream: io.StringIO) -> None:
    def handler() -> None:
        {}["oops"]  # the KeyError is the point

    try:
        handler()
    except KeyError:
        logging.getLogger("crank.runtime.worker").exception("task t1 raised")
        get_logger("crank.test").exception("structlog_raised", task="t1")
    stdlib, native = (json.loads(line) for line in log_stream.getvalue().splitlines())
    for line in (stdlib, native):
        assert "exc_info" not in line
        exception = line["exception"]
        assert exception.startswith("Traceback (most recent call last):\n")
        assert ", in handler\n" in exception
        assert exception.endswith("KeyError: 'oops'")
        assert line["level"] == "error"
    assert stdlib["event"] == "task t1 raised"


def test_a_secret_in_an_exception_message_is_redacted(log_stream: io.StringIO) -> None:
    try:
        raise ConnectionError("cannot reach redis://:s3cret-pw@cache:6379/0")
    except ConnectionError:
        logging.getLogger("crank.runtime.worker").exception("broker down")
    (line,) = (json.loads(text) for text in log_stream.getvalue().splitlines())
    assert line["exception"].endswith(
        f"ConnectionError: cannot reach redis://:{REDACTED}@cache:6379/0"
    )


def test_json_lines_hold_no_escape_codes_and_no_color_message(log_stream: io.StringIO) -> None:
    # what uvicorn logs: a plain message plus a coloured copy for its own formatter
    logging.getLogger("uvicorn.error").info(
        "Uvicorn running on %s (Press CTRL+C to quit)",
        "http://127.0.0.1:8080",
        extra={"color_message": "Uvicorn running on \x1b[1m%s\x1b[0m (Press CTRL+C to quit)"},
    )
    get_logger("crank.test").info("\x1b[31mred\x1b[0m", detail="\x1b[1mbold\x1b[0m")
    text = log_stream.getvalue()
    assert "\x1b" not in text and "\\u001b" not in text
    uvicorn, ours = (json.loads(line) for line in text.splitlines())
    assert uvicorn["event"] == "Uvicorn running on http://127.0.0.1:8080 (Press CTRL+C to quit)"
    assert "color_message" not in uvicorn
    assert (ours["event"], ours["detail"]) == ("red", "bold")


def test_console_lines_are_for_people(configured: Callable[..., io.StringIO]) -> None:
    stream = configured("prod", log_format="console")
    logging.getLogger("uvicorn.error").info(
        "Uvicorn running on %s", "http://127.0.0.1:9", extra={"color_message": "\x1b[1mx\x1b[0m"}
    )
    try:
        {}["oops"]
    except KeyError:
        get_logger("crank.test").exception("task_raised", task_id="t1", password="hunter2")
    text = stream.getvalue()
    assert not text.lstrip().startswith("{")
    assert "\x1b" not in text  # a string stream is no terminal: no colours
    first, second = text.splitlines()[:2]
    assert "[info     ] Uvicorn running on http://127.0.0.1:9" in first
    assert "color_message" not in text
    assert "[error    ] task_raised" in second
    assert f"password={REDACTED}" in second and "task_id=t1" in second
    assert "Traceback (most recent call last):" in text
    assert text.rstrip().endswith("KeyError: 'oops'")


#: what an access log line may hold: a path with a secret in it, an id that looks like a
#: key, escape codes from a client.
ACCESS_FIELDS = {
    "method": "GET",
    "path": "/v1/x;password=hunter2/\x1b[31mred",
    "status": 200,
    "duration_ms": 1.25,
}


def _without_timestamp(line: str, log_format: str) -> str:
    if log_format == "json":
        doc = json.loads(line)
        assert doc.pop("timestamp").endswith("Z")
        return json.dumps(doc)
    stamp, _, rest = line.partition(" ")
    assert stamp.endswith("Z")
    return rest


@contextlib.contextmanager
def crank_handler_only() -> Iterator[None]:
    """Only crank's handler on the root logger (pytest's log capture, added around each
    test's call, taken off), as in ``crank run``: a :class:`LineLogger` then writes its
    lines itself."""
    root = logging.getLogger()
    others = [h for h in root.handlers if h.get_name() != "crank"]
    for handler in others:
        root.removeHandler(handler)
    try:
        yield
    finally:
        for handler in others:
            root.addHandler(handler)


@pytest.mark.parametrize("log_format", ["json", "console"])
def test_a_line_logger_writes_what_structlog_writes(
    configured: Callable[..., io.StringIO], log_format: LogFormat, monkeypatch: pytest.MonkeyPatch
) -> None:
    stream = configured("prod", log_format=log_format)
    bridged_lines: list[str] = []
    monkeypatch.setattr(  # count the lines that went through logging's handlers
        logging.Logger, "handle", _counting(logging.Logger.handle, bridged_lines)
    )
    bind_ids(request_id="Ab3" * 12, trace_id="t1", task_id="k1")
    with crank_handler_only():
        LineLogger().info("http_request", **ACCESS_FIELDS)
        get_logger().info("http_request", **ACCESS_FIELDS)
    direct, bridged = stream.getvalue().splitlines()
    assert len(bridged_lines) == 1  # get_logger's line only: the LineLogger wrote its own
    assert _without_timestamp(direct, log_format) == _without_timestamp(bridged, log_format)
    assert "hunter2" not in direct and "\x1b" not in direct and "Ab3Ab3" not in direct
    if log_format == "json":
        line = json.loads(direct)
        assert set(line) == {*ACCESS_FIELDS, "event", "request_id", "trace_id", "task_id",
                             "level", "logger", "timestamp"}  # fmt: skip
        assert line["path"] == f"/v1/x;password={REDACTED}"
        assert line["request_id"] == REDACTED


def _counting(handle: Callable[..., None], into: list[str]) -> Callable[..., None]:
    def counted(logger: logging.Logger, record: logging.LogRecord) -> None:
        into.append(logger.name)
        handle(logger, record)

    return counted


def test_a_line_logger_defers_to_logging_when_others_listen(
    log_stream: io.StringIO,
) -> None:
    class Kept(logging.Handler):
        def __init__(self) -> None:
            super().__init__()
            self.records: list[logging.LogRecord] = []

        def emit(self, record: logging.LogRecord) -> None:
            self.records.append(record)

    root = logging.getLogger()
    kept = Kept()
    with crank_handler_only():
        root.addHandler(kept)
        try:
            LineLogger().info("http_request", status=200)
        finally:
            root.removeHandler(kept)
        # structlog configured anew (as capture_logs does) sees the line
        with structlog.testing.capture_logs() as captured:
            LineLogger().info("http_request", status=201)
        # a level above INFO writes nothing
        logging.getLogger("crank.runtime").setLevel(logging.WARNING)
        try:
            LineLogger().info("http_request", status=202)
        finally:
            logging.getLogger("crank.runtime").setLevel(logging.NOTSET)
    # the other handler got its record, and crank's line was written as well
    [record] = kept.records
    assert record.name == "crank.runtime"
    assert captured == [{"event": "http_request", "status": 201, "log_level": "info"}]
    assert [json.loads(line)["status"] for line in log_stream.getvalue().splitlines()] == [200]


def test_a_line_logger_reports_a_broken_stream_as_logging_does(
    log_stream: io.StringIO, capsys: pytest.CaptureFixture[str]
) -> None:
    log_stream.close()
    with crank_handler_only():
        LineLogger().info("http_request", status=200)  # no exception reaches the request
    assert "--- Logging error ---" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("environ", "mode", "terminal", "expected"),
    [
        ({}, "prod", False, "json"),
        ({}, "prod", True, "console"),
        ({}, "dev", False, "console"),
        ({"CRANK_LOG_FORMAT": "auto"}, "prod", True, "console"),
        ({"CRANK_LOG_FORMAT": "json"}, "prod", True, "json"),
        ({"CRANK_LOG_FORMAT": "JSON "}, "dev", True, "json"),
        ({"CRANK_LOG_FORMAT": "console"}, "prod", False, "console"),
        ({"CRANK_LOG_FORMAT": ""}, "prod", False, "json"),
    ],
)
def test_the_log_format(environ: dict[str, str], mode: str, terminal: bool, expected: str) -> None:
    class Stream(io.StringIO):
        def isatty(self) -> bool:
            return terminal

    assert resolve_log_format(mode, stream=Stream(), environ=environ) == expected


def test_an_unknown_log_format_is_a_usage_error() -> None:
    with pytest.raises(UsageError) as caught:
        resolve_log_format("prod", environ={"CRANK_LOG_FORMAT": "xml"})
    assert caught.value.message == "CRANK_LOG_FORMAT='xml' is not a log format"
    assert caught.value.hint == "set CRANK_LOG_FORMAT to one of auto, json, console, or unset it"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("plain words", "plain words"),
        ("Bearer abc.def", REDACTED),
        ("AKIAIOSFODNN7EXAMPLE", REDACTED),
        ("ghp_" + "a1B2" * 6, REDACTED),
        (
            "0123456789abcdef0123456789abcdef",
            "0123456789abcdef0123456789abcdef",
        ),  # a hash, no upper case
        ("Zq8" + "xY7wV6uT5sR4qP3oN2mL1kJ0iH9gFf", REDACTED),
        ("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", REDACTED),  # base64, with slashes
        # a path through a temporary directory with a random name is a path, not a key
        (
            'File "/tmp/tmp.Ab3xK9qLm2/c/tests/fixtures/crank_fixture/worker.py", line 24',
            'File "/tmp/tmp.Ab3xK9qLm2/c/tests/fixtures/crank_fixture/worker.py", line 24',
        ),
        (
            "/var/folders/Xy7Ab3Cd9Ef1/T/pytest-of-ann/pytest-12/worker0/models/mlp.onnx",
            "/var/folders/Xy7Ab3Cd9Ef1/T/pytest-of-ann/pytest-12/worker0/models/mlp.onnx",
        ),
    ],
)
def test_values_that_look_like_keys(value: str, expected: str) -> None:
    assert redact(value) == expected


@pytest.mark.parametrize(
    "key",
    [
        "input_tokens", "output_tokens", "max_tokens", "token_count", "token_type", "passed",
        "author", "authored_by", "idempotency_key", "cache_key", "key", "private_key_path",
        "bypass", "compass", "tokenizer", "keyboard", "passenger",
    ],
)  # fmt: skip
def test_ordinary_words_keep_their_values(key: str) -> None:
    assert not is_secret_key(key)
    assert redact({key: 42, "nested": {key: "visible"}}) == {key: 42, "nested": {key: "visible"}}


@pytest.mark.parametrize(
    "key",
    [
        "password", "db_password", "Password", "passwd", "pwd", "db_pass", "passphrase",
        "secret", "client_secret", "token", "access_token", "refreshToken", "auth_token",
        "api_key", "apiKey", "X-API-Key", "x-api-key", "apikey", "private_key", "secret_key",
        "Authorization", "proxy-authorization", "cookie", "Set-Cookie", "credentials",
        "aws_secret_access_key", "basic_auth", "auth",
    ],
)  # fmt: skip
def test_secret_keys_are_redacted(key: str) -> None:
    assert is_secret_key(key)
    assert redact({key: "s3cr3t", "nested": [{key: 1234}]}) == {
        key: REDACTED,
        "nested": [{key: REDACTED}],
    }


def test_whether_a_secret_is_set_is_not_hidden() -> None:
    # crank run's start-up line said "auth": "[REDACTED]" for a true/false value
    assert redact({"auth": True, "password": False, "token": None, "api_key": ""}) == {
        "auth": True,
        "password": False,
        "token": None,
        "api_key": "",
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("stdlib password=hunter2", f"stdlib password={REDACTED}"),
        ("login with db_password = 'hunter 2' now", f"login with db_password = {REDACTED} now"),
        ('{"password": "hunter2", "user": "ann"}', f'{{"password": {REDACTED}, "user": "ann"}}'),
        ("api_key: abc123&page=2", f"api_key: {REDACTED}&page=2"),
        ("Authorization: Bearer abc.def", f"Authorization: Bearer {REDACTED}"),
        ("Authorization: Basic dXNlcjpwYXNz", f"Authorization: Basic {REDACTED}"),
        ("token=abc, next", f"token={REDACTED}, next"),
        ("redis://:pw@cache:6379/0", f"redis://:{REDACTED}@cache:6379/0"),
        ("postgres://bob:s3cr3t@db:5432/app", f"postgres://bob:{REDACTED}@db:5432/app"),
        ("at https://ann:p4ss@example.com/x", f"at https://ann:{REDACTED}@example.com/x"),
        # nothing secret: left alone
        ("input_tokens=120 output_tokens=80", "input_tokens=120 output_tokens=80"),
        ("tests passed: 12, author: ann", "tests passed: 12, author: ann"),
        ("http://cache:6379/0 and user@example.com", "http://cache:6379/0 and user@example.com"),
        ("https://ann@example.com/x", "https://ann@example.com/x"),
        ("token_count=3 tokens: 5", "token_count=3 tokens: 5"),
    ],
)  # fmt: skip
def test_secrets_inside_texts(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_nested_keys() -> None:
    doc = {
        "user": "ann",
        "db": {"password": "p", "host": "h"},
        "items": [{"token": "t"}],
        "secret": None,
    }
    assert redact(doc) == {
        "user": "ann",
        "db": {"password": REDACTED, "host": "h"},
        "items": [{"token": REDACTED}],
        "secret": None,
    }


_SECRET_ALPHABET = (
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/_- -BEGINPRIVATEKY:=@'\""
)
_FRAGMENTS = [
    "Bearer ", "sk-", "AKIA", "ghp_", "xoxb-", "-----BEGIN RSA PRIVATE KEY-----", "password=",
    "api_key: ", "token=", "redis://:", "https://ann:", "@host", "secret", "Authorization: Basic ",
    "Ab3Xy9" * 5, "2026-12-05T08:18:05.111836Z", "POST",
]  # fmt: skip


@given(
    st.text(alphabet=_SECRET_ALPHABET, max_size=80)
    | st.lists(
        st.sampled_from(_FRAGMENTS) | st.text(alphabet=_SECRET_ALPHABET.lower(), max_size=20),
        max_size=6,
    ).map("".join)
)
def test_redaction_shortcut_never_changes_the_answer(value: str) -> None:
    # redact() skips the regex for strings it cannot match; the answer must be the same
    assert redact(value) == redact_text(value)


@given(
    st.dictionaries(
        st.sampled_from(["event", "exc_info", "password", "api_key", "path", "token_count", "x"]),
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False)
        | st.text(alphabet=_SECRET_ALPHABET, max_size=40)
        | st.sampled_from(_FRAGMENTS)
        | st.lists(st.text(alphabet=_SECRET_ALPHABET, max_size=40), max_size=3)
        | st.dictionaries(st.sampled_from(["secret", "n"]), st.text(max_size=10), max_size=2),
    )
)
def test_the_log_processor_redacts_each_value_as_redact_does(event: dict[str, object]) -> None:
    # the processor handles texts itself: its verdicts must stay redact()'s, value by value
    expected = {
        k: v if k == "exc_info" else redact(v, key=None if k == "event" else k)
        for k, v in event.items()
    }
    assert redact_processor(None, "info", dict(event)) == expected


def test_logging_follows_stderr_when_it_is_swapped(
    configured: Callable[..., io.StringIO], monkeypatch: pytest.MonkeyPatch
) -> None:
    # configured without a stream, the handler writes to stderr as it is now: a swapped
    # and closed stderr (pytest's capture between tests) is never written to again
    first = io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    configure_logging("prod", log_format="json")
    logging.getLogger("crank.test").warning("to the first")
    first.close()
    second = io.StringIO()
    monkeypatch.setattr(sys, "stderr", second)
    errors: list[logging.LogRecord] = []
    monkeypatch.setattr(logging.Handler, "handleError", lambda _h, record: errors.append(record))
    logging.getLogger("crank.test").warning("to the second")
    assert errors == []
    assert json.loads(second.getvalue().splitlines()[-1])["event"] == "to the second"
